"""The event outbox: domain events written in the same transaction as the change.

Consumers (deployments, pipelines, the console) read events in id order; an event is
never emitted for a change that rolled back, and never lost for one that committed.
:mod:`modelyard.core.outbox` delivers them to handlers with a durable cursor; after a
commit that wrote events, the hooks of :func:`on_events_committed` run in the committing
process (so its own consumers poll at once instead of at their next poll).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import BigInteger, Integer, String, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from modelyard.core.db import Base, JSONType, UTCDateTime, utcnow

log = logging.getLogger("modelyard.events")


class EventRow(Base):
    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    type: Mapped[str] = mapped_column(String(100), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)


_committed_hooks: list[Callable[[], None]] = []


def on_events_committed(hook: Callable[[], None]) -> None:
    """Call ``hook()`` after each commit in this process that wrote events."""
    _committed_hooks.append(hook)


def _run_hooks(_session: Session) -> None:
    for hook in list(_committed_hooks):
        try:
            hook()
        except Exception:  # a wake-up must never fail the caller's commit
            log.exception("an outbox wake-up failed")


def write_events(session: Session, actor: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    for event_type, payload in events:
        session.add(EventRow(type=event_type, actor=actor, payload=payload))
    if events and not session.info.get("_events_hook"):
        session.info["_events_hook"] = True

        def committed(s: Session) -> None:
            s.info.pop("_events_hook", None)
            _run_hooks(s)

        # After a rollback the listener stays for the session's next commit: a harmless
        # extra poll.
        event.listen(session, "after_commit", committed, once=True)


def read_events(session: Session, *, after: int = 0, limit: int = 100) -> list[EventRow]:
    """Events with ``seq > after`` in commit order of their sequence numbers."""
    stmt = select(EventRow).where(EventRow.seq > after).order_by(EventRow.seq).limit(limit)
    return list(session.scalars(stmt))
