"""``modelyard users|tokens|audit``."""

from __future__ import annotations

import typer

from modelyard.cli.common import client, emit, handle_errors, table
from modelyard.security.roles import ROLES

users_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens (stored hashed, shown once).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of every change.", no_args_is_help=True)


@users_app.command("create")
@handle_errors
def users_create(
    name: str,
    role: str = typer.Option("scientist", help=f"One of: {', '.join(ROLES)}."),
) -> None:
    """Create a user."""
    with client() as c:
        user = c.users.create(name, role)  # type: ignore[arg-type]
    emit(user, lambda: typer.echo(f"created user {user.name} ({user.role})"))


@users_app.command("list")
@handle_errors
def users_list() -> None:
    """List users."""
    with client() as c:
        result = c.users.list()
    emit(
        result,
        lambda: table(
            "users",
            ["name", "role", "disabled", "created"],
            [(u.name, u.role, u.disabled, u.created_at) for u in result.users],
        ),
    )


@tokens_app.command("create")
@handle_errors
def tokens_create(
    user: str = typer.Option(..., "--user", help="Whose token."),
    name: str = typer.Option("default", help="A label for the token."),
    expires_in_days: int | None = typer.Option(None, help="Expiry; none by default."),
) -> None:
    """Create a token and print it. It cannot be shown again."""
    with client() as c:
        created = c.tokens.create(user, name, expires_in_days)
    emit(created, lambda: typer.echo(created.token))


@tokens_app.command("list")
@handle_errors
def tokens_list(user: str = typer.Option(..., "--user")) -> None:
    """List a user's tokens (ids and dates, never secrets)."""
    with client() as c:
        result = c.tokens.list(user)
    emit(
        result,
        lambda: table(
            f"tokens of {user}",
            ["id", "name", "created", "expires", "revoked"],
            [(t.id, t.name, t.created_at, t.expires_at, t.revoked_at) for t in result.tokens],
        ),
    )


@tokens_app.command("revoke")
@handle_errors
def tokens_revoke(token_id: str) -> None:
    """Revoke a token."""
    with client() as c:
        token = c.tokens.revoke(token_id)
    emit(token, lambda: typer.echo(f"revoked {token.id}"))


@audit_app.command("list")
@handle_errors
def audit_list(
    actor: str | None = typer.Option(None),
    operation: str | None = typer.Option(None),
    limit: int = typer.Option(50),
) -> None:
    """Show audit events, newest first."""
    with client() as c:
        result = c.audit.list(actor=actor, operation=operation, limit=limit)
    emit(
        result,
        lambda: table(
            "audit",
            ["time", "actor", "operation", "target", "origin", "result"],
            [
                (
                    e.time.isoformat(timespec="seconds"),
                    e.actor,
                    e.operation,
                    e.target,
                    e.origin,
                    e.result,
                )
                for e in result.events
            ],
        ),
    )
