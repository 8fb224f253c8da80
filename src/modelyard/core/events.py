"""The event outbox: domain events written in the same transaction as the change.

Consumers (deployments, pipelines, the console) read events in id order; an event is
never emitted for a change that rolled back, and never lost for one that committed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from modelyard.core.db import Base, JSONType, UTCDateTime, utcnow


class EventRow(Base):
    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    type: Mapped[str] = mapped_column(String(100), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)


def write_events(session: Session, actor: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    for event_type, payload in events:
        session.add(EventRow(type=event_type, actor=actor, payload=payload))


def read_events(session: Session, *, after: int = 0, limit: int = 100) -> list[EventRow]:
    """Events with ``seq > after`` in commit order of their sequence numbers."""
    stmt = select(EventRow).where(EventRow.seq > after).order_by(EventRow.seq).limit(limit)
    return list(session.scalars(stmt))
