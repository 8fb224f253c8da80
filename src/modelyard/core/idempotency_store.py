"""The table of idempotency keys and the two steps around an operation that uses one.

:func:`replay` runs before the operation, in a short read transaction: the stored result
of an earlier call with the key, if any. :func:`remember` runs in the operation's write
transaction, after it returned: the key and the result are written with the change, so
both commit or neither does. Two calls with one key at the same time both miss in
:func:`replay`; the second to commit fails on the key's primary key (:class:`KeyTaken`)
and its transaction rolls back, after which :func:`replay` finds the first one's result.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import String, Text, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from modelyard.core.db import Base, UTCDateTime, utcnow
from modelyard.core.idempotency import WINDOW
from modelyard.errors import Conflict


class IdempotencyRow(Base):
    __tablename__ = "idempotency_keys"

    # Keys are the client's: one user's key never meets another's.
    actor: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    operation: Mapped[str] = mapped_column(String(100))
    request_digest: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class KeyTaken(Exception):
    """Another call with the same key committed first (this one was rolled back)."""


def replay(
    session: Session, *, actor: str, key: str, operation: str, digest: str, output: Any
) -> Any | None:
    """The result stored for ``key``, rebuilt as ``output``; ``None`` when the key is
    unknown or older than :data:`WINDOW`. :class:`Conflict` when it was used for another
    request (operation or input)."""
    row = session.get(IdempotencyRow, (actor, key))
    if row is None or row.created_at <= utcnow() - WINDOW:
        return None
    if row.operation != operation or row.request_digest != digest:
        used_for = "another operation" if row.operation != operation else "another input"
        raise Conflict(
            f"idempotency key {key!r} was already used for {used_for} ({row.operation}); "
            "send a new key with a new request",
            details={"idempotency_key": key, "operation": row.operation},
        )
    return TypeAdapter(output).validate_json(row.result)


def remember(
    session: Session, *, actor: str, key: str, operation: str, digest: str, result_json: str
) -> None:
    """Store the key with the result in the operation's transaction; :class:`KeyTaken` if
    a concurrent call stored it first. Expired rows (this key's included) are removed on
    the way, through the index on ``created_at``: the table holds about one window."""
    session.execute(delete(IdempotencyRow).where(IdempotencyRow.created_at <= utcnow() - WINDOW))
    try:
        with session.begin_nested():
            session.add(
                IdempotencyRow(
                    actor=actor,
                    key=key,
                    operation=operation,
                    request_digest=digest,
                    result=result_json,
                    created_at=utcnow(),
                )
            )
    except IntegrityError as exc:
        raise KeyTaken(key) from exc


def stored_keys(session: Session, actor: str) -> list[str]:
    """The keys stored for ``actor`` (for tests and support)."""
    return list(session.scalars(select(IdempotencyRow.key).where(IdempotencyRow.actor == actor)))
