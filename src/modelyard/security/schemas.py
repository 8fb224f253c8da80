"""Request and response types of the security domain."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from modelyard.security.roles import Role

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$"


class CreateUser(BaseModel):
    name: str = Field(pattern=NAME_PATTERN, description="Login name.")
    role: Role = "scientist"


class User(BaseModel):
    id: str
    name: str
    role: Role
    disabled: bool
    created_at: dt.datetime
    created_by: str


class ListUsers(BaseModel):
    pass


class UserList(BaseModel):
    users: list[User]


class WhoAmI(BaseModel):
    pass


class Me(BaseModel):
    user: str
    role: str
    permissions: list[str]
    auth: bool = Field(description="False in single-user mode (loopback, no tokens).")


class CreateToken(BaseModel):
    user: str = Field(pattern=NAME_PATTERN)
    name: str = Field("default", min_length=1, max_length=100)
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class Token(BaseModel):
    id: str
    user: str
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class CreatedToken(Token):
    token: str = Field(description="The secret token. Shown once; only its hash is stored.")


class ListTokens(BaseModel):
    user: str = Field(pattern=NAME_PATTERN)


class TokenList(BaseModel):
    tokens: list[Token]


class RevokeToken(BaseModel):
    token_id: str = Field(pattern=r"^tok-[0-9a-z]{26}$")


class ListAudit(BaseModel):
    actor: str | None = Field(None, max_length=100)
    operation: str | None = Field(None, max_length=100)
    since: AwareDatetime | None = None
    limit: int = Field(100, ge=1, le=10_000)


class AuditEvent(BaseModel):
    id: str
    time: dt.datetime
    actor: str
    operation: str
    target: str | None
    origin: str
    result: str
    request_id: str
    detail: dict[str, Any]


class AuditList(BaseModel):
    events: list[AuditEvent]
