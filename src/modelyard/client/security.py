"""SDK wrappers for users, tokens and the audit log."""

from __future__ import annotations

import datetime as dt

from modelyard.client.transport import Transport
from modelyard.security.roles import Role
from modelyard.security.schemas import (
    AuditList,
    CreatedToken,
    CreateToken,
    CreateUser,
    ListAudit,
    ListTokens,
    ListUsers,
    Me,
    RevokeToken,
    Token,
    TokenList,
    User,
    UserList,
    WhoAmI,
)


class UsersAPI:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, name: str, role: Role = "scientist") -> User:
        result: User = self._t.call("security.create_user", CreateUser(name=name, role=role))
        return result

    def list(self) -> UserList:
        result: UserList = self._t.call("security.list_users", ListUsers())
        return result

    def me(self) -> Me:
        result: Me = self._t.call("security.whoami", WhoAmI())
        return result


class TokensAPI:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(
        self, user: str, name: str = "default", expires_in_days: int | None = None
    ) -> CreatedToken:
        """A new token for ``user``; ``.token`` holds the secret, shown this once."""
        result: CreatedToken = self._t.call(
            "security.create_token",
            CreateToken(user=user, name=name, expires_in_days=expires_in_days),
        )
        return result

    def list(self, user: str) -> TokenList:
        result: TokenList = self._t.call("security.list_tokens", ListTokens(user=user))
        return result

    def revoke(self, token_id: str) -> Token:
        result: Token = self._t.call("security.revoke_token", RevokeToken(token_id=token_id))
        return result


class AuditAPI:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(
        self,
        *,
        actor: str | None = None,
        operation: str | None = None,
        since: dt.datetime | None = None,
        limit: int = 100,
    ) -> AuditList:
        """Audit events, newest first."""
        result: AuditList = self._t.call(
            "security.list_audit",
            ListAudit(actor=actor, operation=operation, since=since, limit=limit),
        )
        return result
