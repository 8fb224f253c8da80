"""Request and response types of the security domain."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import AwareDatetime, Field

from modelyard.core.schema import Schema
from modelyard.security.roles import Role

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$"


class CreateUser(Schema):
    name: str = Field(pattern=NAME_PATTERN, description="Login name.")
    role: Role = "scientist"


class User(Schema):
    id: str
    name: str
    role: Role
    disabled: bool
    created_at: dt.datetime
    created_by: str


class ListUsers(Schema):
    pass


class UserList(Schema):
    users: list[User]


class WhoAmI(Schema):
    pass


class Me(Schema):
    user: str
    role: str
    permissions: list[str]
    auth: bool = Field(description="False in single-user mode (loopback, no tokens).")


class CreateToken(Schema):
    user: str = Field(pattern=NAME_PATTERN)
    name: str = Field("default", min_length=1, max_length=100)
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class Token(Schema):
    id: str
    user: str
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class CreatedToken(Token):
    token: str = Field(description="The secret token. Shown once; only its hash is stored.")


class ListTokens(Schema):
    user: str = Field(pattern=NAME_PATTERN)


class TokenList(Schema):
    tokens: list[Token]


class RevokeToken(Schema):
    token_id: str = Field(pattern=r"^tok-[0-9a-z]{26}$")


class ListAudit(Schema):
    actor: str | None = Field(None, max_length=100)
    operation: str | None = Field(None, max_length=100)
    since: AwareDatetime | None = None
    limit: int = Field(100, ge=1, le=10_000)


class AuditEvent(Schema):
    id: str
    time: dt.datetime
    actor: str
    operation: str
    target: str | None
    origin: str
    result: str
    request_id: str
    detail: dict[str, Any]


class AuditList(Schema):
    events: list[AuditEvent]
