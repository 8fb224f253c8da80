"""Operations of the security domain, plus authentication and audit recording."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.core.db import utcnow
from modelyard.core.ids import new_id
from modelyard.core.operations import Context, OperationSet, Principal
from modelyard.errors import AlreadyExists, NotFound, PermissionDenied, Unauthenticated
from modelyard.security import tokens
from modelyard.security.roles import ROLES
from modelyard.security.schemas import (
    AuditEvent,
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
from modelyard.security.store import AuditRow, TokenRow, UserRow

ops = OperationSet("security")

LOCAL_USER = "local"


def local_principal() -> Principal:
    """The single user of an install without auth (loopback only) or of the embedded SDK."""
    return Principal(user=LOCAL_USER, role="admin", permissions=ROLES["admin"])


def principal_for(user: UserRow, token_id: str | None = None) -> Principal:
    return Principal(
        user=user.name, role=user.role, permissions=ROLES[user.role], token_id=token_id
    )


def authenticate(session: Session, token: str) -> Principal:
    """The principal a bearer token belongs to; :class:`Unauthenticated` otherwise.

    The message never says which part was wrong, so it cannot be used to probe ids.
    """
    parsed = tokens.parse_token(token)
    if parsed is None:
        raise Unauthenticated("the API token is malformed; tokens start with 'myt_'")
    token_id, secret = parsed
    row = session.get(TokenRow, token_id)
    now = utcnow()
    if (
        row is None
        or not tokens.matches(secret, row.secret_hash)
        or row.revoked_at is not None
        or (row.expires_at is not None and row.expires_at <= now)
    ):
        raise Unauthenticated("the API token is invalid, expired or revoked")
    user = session.get(UserRow, row.user_id)
    if user is None or user.disabled:
        raise Unauthenticated("the API token's user is disabled")
    return principal_for(user, token_id)


def record_audit(
    session: Session,
    *,
    principal: Principal,
    operation: str,
    target: str | None,
    origin: str,
    result: str,
    request_id: str,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditRow(
            id=new_id("aud"),
            time=utcnow(),
            actor=principal.user,
            operation=operation,
            target=target,
            origin=origin,
            result=result,
            request_id=request_id,
            detail=detail or {},
        )
    )


def has_users(session: Session) -> bool:
    return session.scalars(select(UserRow.id).limit(1)).first() is not None


def _user(row: UserRow) -> User:
    return User.model_validate(row, from_attributes=True)


def _user_by_name(session: Session, name: str) -> UserRow:
    row = session.scalars(select(UserRow).where(UserRow.name == name)).first()
    if row is None:
        raise NotFound(f"user {name!r} does not exist")
    return row


def _token(row: TokenRow, user: str) -> Token:
    return Token(
        id=row.id,
        user=user,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


@ops.operation("POST", "/users", permission="users.admin")
def create_user(ctx: Context, req: CreateUser) -> User:
    """Create a user with a role (admin, engineer, scientist, viewer)."""
    ctx.audit_target = f"user:{req.name}"
    row = UserRow(id=new_id("usr"), name=req.name, role=req.role, created_by=ctx.principal.user)
    try:
        with ctx.session.begin_nested():
            ctx.session.add(row)
    except IntegrityError as exc:
        raise AlreadyExists(f"user {req.name!r} already exists") from exc
    return _user(row)


@ops.operation("GET", "/users", permission="users.admin")
def list_users(ctx: Context, req: ListUsers) -> UserList:
    """List users."""
    rows = ctx.session.scalars(select(UserRow).order_by(UserRow.name))
    return UserList(users=[_user(r) for r in rows])


@ops.operation("GET", "/me", permission="me.read")
def whoami(ctx: Context, req: WhoAmI) -> Me:
    """Who the caller is and what they may do."""
    return Me(
        user=ctx.principal.user,
        role=ctx.principal.role,
        permissions=sorted(ctx.principal.permissions),
        auth=ctx.settings.auth,
    )


def _check_self_or_admin(ctx: Context, user: str) -> None:
    if user != ctx.principal.user and not ctx.principal.can("users.admin"):
        raise PermissionDenied(
            f"{ctx.principal.user!r} may only manage their own tokens, not {user!r}'s"
        )


@ops.operation("POST", "/users/{user}/tokens", permission="tokens.write")
def create_token(ctx: Context, req: CreateToken) -> CreatedToken:
    """Create an API token; the secret is returned once and only its hash is kept."""
    _check_self_or_admin(ctx, req.user)
    ctx.audit_target = f"user:{req.user}"
    user = _user_by_name(ctx.session, req.user)
    secret = tokens.new_secret()
    now = utcnow()
    row = TokenRow(
        id=new_id("tok"),
        user_id=user.id,
        name=req.name,
        secret_hash=tokens.hash_secret(secret),
        created_at=now,
        expires_at=now + dt.timedelta(days=req.expires_in_days) if req.expires_in_days else None,
    )
    ctx.session.add(row)
    ctx.audit_target = f"token:{row.id}"
    return CreatedToken(
        **_token(row, user.name).model_dump(), token=tokens.format_token(row.id, secret)
    )


@ops.operation("GET", "/users/{user}/tokens", permission="tokens.write")
def list_tokens(ctx: Context, req: ListTokens) -> TokenList:
    """List a user's tokens (never their secrets)."""
    _check_self_or_admin(ctx, req.user)
    user = _user_by_name(ctx.session, req.user)
    rows = ctx.session.scalars(
        select(TokenRow).where(TokenRow.user_id == user.id).order_by(TokenRow.created_at)
    )
    return TokenList(tokens=[_token(r, user.name) for r in rows])


@ops.operation("DELETE", "/tokens/{token_id}", permission="tokens.write")
def revoke_token(ctx: Context, req: RevokeToken) -> Token:
    """Revoke a token; it stops working at once. Another user's token (for a caller who
    is not an admin) is answered as a missing one, so token ids cannot be probed."""
    ctx.audit_target = f"token:{req.token_id}"
    row = ctx.session.get(TokenRow, req.token_id)
    user = ctx.session.get(UserRow, row.user_id) if row is not None else None
    if (
        row is None
        or user is None
        or (user.name != ctx.principal.user and not ctx.principal.can("users.admin"))
    ):
        raise NotFound(f"token {req.token_id!r} does not exist")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return _token(row, user.name)


@ops.operation("GET", "/audit", permission="audit.admin")
def list_audit(ctx: Context, req: ListAudit) -> AuditList:
    """Audit events, newest first: who did what, when, from where, and the result."""
    stmt = select(AuditRow).order_by(AuditRow.time.desc(), AuditRow.id.desc()).limit(req.limit)
    if req.actor:
        stmt = stmt.where(AuditRow.actor == req.actor)
    if req.operation:
        stmt = stmt.where(AuditRow.operation == req.operation)
    if req.since:
        stmt = stmt.where(AuditRow.time >= req.since)
    rows = ctx.session.scalars(stmt)
    return AuditList(events=[AuditEvent.model_validate(r, from_attributes=True) for r in rows])
