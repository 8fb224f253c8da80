"""The outbox consumer: reactions to domain events, with a durable per-consumer cursor.

Every committed change writes its events to the ``events`` table in the same transaction
(:mod:`modelyard.core.events`). A consumer reads them after its cursor, calls the handlers
registered for each event's type, and then moves its cursor (``outbox_cursors``) past
them. Delivery is **at least once**: a consumer killed after a handler ran and before the
cursor moved sees that event again after a restart, so handlers must be idempotent
(``finalize`` a job that is already finalized: nothing happens). A handler that raises
stops the batch at that event; the next poll delivers it again (and so on, logged each
time: nothing after it is lost or skipped).

Any process and any host on the same database sees every event: the consumer polls (every
``poll_s``, 0.25 s by default, and at once after a commit in its own process writes an
event), so a write by a CLI against the same home or by a second ``modelyard up`` on the
same PostgreSQL database reaches it within a poll. (PostgreSQL ``LISTEN/NOTIFY`` would
save the idle polls; a poll of the primary key is cheap enough for now.)

**Gaps.** ``events.seq`` comes from a sequence (PostgreSQL) or the rowid (SQLite). On
PostgreSQL two transactions can take ids 10 and 11 and commit in the other order: a reader
that sees 11 and moves its cursor to 11 would never see 10. A rolled-back transaction
leaves a hole that is never filled, too. So the consumer keeps its durable cursor at the
*low watermark* — every seq at or below it was delivered or given up — and remembers each
hole it has passed in memory with the time it was first seen. Events after a hole are
delivered at once (no waiting on the hole); each poll also reads the holes again, and an
event that fills one is delivered then (so delivery follows commit order, as the events
become visible). A hole still empty after ``gap_s`` (30 s: longer than any transaction
between writing an event and committing should take) is given up and the cursor moves
past it. A consumer that restarts re-reads from the watermark: what it had delivered past
a hole is delivered again (at least once). SQLite has one writer at a time and reuses a
rolled-back rowid, so it has no holes.

Why not order on a commit sequence instead: PostgreSQL has none that a plain table can
read without ``track_commit_timestamp`` (a server setting we cannot assume), and ordering
by transaction id (``pg_current_xact_id``) is exact but delivers in transaction *start*
order, which for two writers of one row is not the order their changes happened in.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.core.control_store import OutboxCursorRow
from modelyard.core.db import Database, utcnow
from modelyard.core.events import EventRow, on_events_committed
from modelyard.errors import InvalidInput

log = logging.getLogger("modelyard.outbox")

# A hole wider than this is given up at once (a PostgreSQL crash skips at most 32 ids of a
# sequence; thousands missing means rows were deleted, not that a transaction is open).
MAX_HOLE = 1000


@dataclass(frozen=True)
class Event:
    """One committed domain event."""

    seq: int
    type: str
    actor: str
    payload: dict[str, Any]

    @classmethod
    def of(cls, row: EventRow) -> Event:
        return cls(seq=row.seq, type=row.type, actor=row.actor, payload=dict(row.payload))


Handler = Callable[[Event], None]

_consumers: weakref.WeakSet[OutboxConsumer] = weakref.WeakSet()


def _poke_all() -> None:
    for consumer in list(_consumers):
        consumer.poke()


on_events_committed(_poke_all)


class OutboxConsumer:
    """Delivers committed events to handlers by type, after a durable cursor named ``name``.

    Use :meth:`start`/:meth:`stop` for a thread of its own, or call :meth:`poll_once` from
    a loop you own (the controller kit does). ``start_at`` decides where a consumer without
    a stored cursor begins: ``"beginning"`` (every event ever written) or ``"end"`` (only
    events after its first poll).
    """

    def __init__(
        self,
        db: Database,
        name: str,
        handlers: Mapping[str, Handler] | None = None,
        *,
        batch: int = 200,
        poll_s: float = 0.25,
        gap_s: float = 30.0,
        start_at: Literal["beginning", "end"] = "beginning",
        on_poke: Callable[[], None] | None = None,
    ) -> None:
        if not name or len(name) > 100:
            raise InvalidInput(f"an outbox consumer needs a name of 1-100 characters, not {name!r}")
        if start_at not in ("beginning", "end"):
            raise InvalidInput(f"start_at must be 'beginning' or 'end', not {start_at!r}")
        self.db = db
        self.name = name
        self.batch = batch
        self.poll_s = poll_s
        self.gap_s = gap_s
        self.start_at = start_at
        self._handlers: dict[str, list[Handler]] = {}
        for event_type, handler in (handlers or {}).items():
            self.on(event_type, handler)
        self._position: int | None = None  # the durable low watermark, once loaded
        self._high = 0  # the highest seq delivered
        self._holes: dict[int, float | None] = {}  # seq -> first seen (None: never give up)
        self._poked = threading.Event()
        self._on_poke = on_poke
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one poll at a time
        _consumers.add(self)

    # -- registration ----------------------------------------------------------------------

    def on(self, event_type: str, handler: Handler) -> None:
        """Call ``handler`` for every event of ``event_type`` (``"*"``: every event)."""
        self._handlers.setdefault(event_type, []).append(handler)

    @property
    def position(self) -> int | None:
        """The stored cursor: every event with ``seq <= position`` was delivered."""
        return self._position

    # -- polling ---------------------------------------------------------------------------

    def poke(self) -> None:
        """Poll soon (called after a commit in this process wrote events)."""
        self._poked.set()
        if self._on_poke is not None:
            self._on_poke()

    def poll_once(self) -> int:
        """Deliver what is new (and any hole that filled); the number of events delivered.

        A handler's exception propagates after the cursor is stored up to, not including,
        the failed event.
        """
        with self._lock:
            self._poked.clear()
            if self._position is None:
                self._load()
            delivered = 0
            try:
                delivered += self._fill_holes()
                delivered += self._read_new()
            finally:
                self._expire_holes()
                self._store()
            return delivered

    def prime(self) -> None:
        """Read (or create) the stored cursor now, so ``start_at="end"`` means from here."""
        with self._lock:
            if self._position is None:
                self._load()

    def _load(self) -> None:
        try:
            self._load_or_create()
        except IntegrityError:  # another process created the same cursor just now
            self._load_or_create()

    def _load_or_create(self) -> None:
        with self.db.transaction() as session:
            row = session.get(OutboxCursorRow, self.name)
            if row is None:
                start = 0
                if self.start_at == "end":
                    start = session.scalar(select(func.max(EventRow.seq))) or 0
                row = OutboxCursorRow(consumer=self.name, position=start, updated_at=utcnow())
                session.add(row)
            position = row.position
        self._position = self._high = position

    def _dispatch(self, event: Event) -> None:
        for handler in (*self._handlers.get(event.type, ()), *self._handlers.get("*", ())):
            handler(event)

    def _fill_holes(self) -> int:
        if not self._holes:
            return 0
        with self.db.transaction(write=False) as session:
            rows = [Event.of(r) for r in _events(session, seqs=sorted(self._holes))]
        for event in rows:
            try:
                self._dispatch(event)
            except Exception:
                self._holes[event.seq] = None  # seen: redeliver until it is handled
                raise
            del self._holes[event.seq]
        return len(rows)

    def _read_new(self) -> int:
        with self.db.transaction(write=False) as session:
            rows = [Event.of(r) for r in _events(session, after=self._high, limit=self.batch)]
        now = time.monotonic()
        for event in rows:
            if event.seq - self._high - 1 > MAX_HOLE:
                log.warning(
                    "outbox consumer %s: events %d-%d are missing; skipping them",
                    self.name,
                    self._high + 1,
                    event.seq - 1,
                )
            else:
                for missing in range(self._high + 1, event.seq):
                    self._holes.setdefault(missing, now)
            try:
                self._dispatch(event)
            except Exception:
                # Deliver it (and what follows) again at the next poll.
                self._holes = {s: t for s, t in self._holes.items() if s < event.seq}
                raise
            self._high = event.seq
        return len(rows)

    def _expire_holes(self) -> None:
        now = time.monotonic()
        for seq, seen in list(self._holes.items()):
            if seen is not None and now - seen >= self.gap_s:
                del self._holes[seq]

    def _store(self) -> None:
        position = min(self._holes) - 1 if self._holes else self._high
        if position == self._position:
            return
        with self.db.transaction() as session:
            row = session.get(OutboxCursorRow, self.name, with_for_update=True)
            if row is None:  # deleted under us: write it again
                session.add(OutboxCursorRow(consumer=self.name, position=position))
            else:
                row.position = position
                row.updated_at = utcnow()
        self._position = position

    # -- a thread of its own ---------------------------------------------------------------

    def start(self) -> bool:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name=f"modelyard-outbox-{self.name}", daemon=True
            )
            self._thread.start()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._poked.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("outbox consumer %s: a handler failed; retrying it", self.name)
            self._poked.wait(self.poll_s)


def _events(
    session: Session, *, after: int | None = None, seqs: list[int] | None = None, limit: int = 0
) -> list[EventRow]:
    stmt = select(EventRow).order_by(EventRow.seq)
    if after is not None:
        stmt = stmt.where(EventRow.seq > after)
    if seqs is not None:
        stmt = stmt.where(EventRow.seq.in_(seqs))
    if limit:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))
