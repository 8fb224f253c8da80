"""The outbox consumer: commit order, a durable cursor, at-least-once, holes, other processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.exc import IntegrityError

from modelyard.core.controllers import Controller
from modelyard.core.db import Database
from modelyard.core.events import EventRow, write_events
from modelyard.core.outbox import Event, OutboxConsumer
from modelyard.migrations import upgrade

WAIT = 15.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    upgrade(database.engine)
    yield database
    database.dispose()


def emit(db: Database, event_type: str, **payload: object) -> int:
    with db.transaction() as session:
        write_events(session, "test", [(event_type, dict(payload))])
        session.flush()
        seq = session.scalar(select(EventRow.seq).order_by(EventRow.seq.desc()).limit(1))
    assert seq is not None
    return seq


def test_events_reach_their_handlers_in_commit_order_and_the_cursor_moves(db: Database) -> None:
    seqs = [emit(db, "thing.made", n=1), emit(db, "thing.gone", n=2), emit(db, "thing.made", n=3)]
    made: list[int] = []
    every: list[tuple[int, str]] = []
    consumer = OutboxConsumer(
        db, "test.order", {"thing.made": lambda e: made.append(e.payload["n"])}
    )
    consumer.on("*", lambda e: every.append((e.seq, e.type)))
    assert consumer.poll_once() == 3
    assert made == [1, 3]
    assert every == list(zip(seqs, ["thing.made", "thing.gone", "thing.made"], strict=True))
    assert consumer.position == seqs[-1]
    assert consumer.poll_once() == 0  # nothing new


def test_a_new_consumer_resumes_after_the_last_handled_event(db: Database) -> None:
    first = [emit(db, "x", n=n) for n in range(3)]
    seen: list[int] = []
    OutboxConsumer(db, "test.resume", {"x": lambda e: seen.append(e.seq)}).poll_once()
    later = [emit(db, "x", n=n) for n in range(3, 5)]
    again: list[int] = []
    restarted = OutboxConsumer(db, "test.resume", {"x": lambda e: again.append(e.seq)})
    restarted.poll_once()
    assert seen == first and again == later
    # A consumer of another name has its own cursor; start_at="end" skips the past.
    fresh: list[int] = []
    tail = OutboxConsumer(db, "test.tail", {"x": lambda e: fresh.append(e.seq)}, start_at="end")
    tail.prime()
    last = emit(db, "x", n=9)
    tail.poll_once()
    assert fresh == [last]


def test_a_failing_handler_is_delivered_again_and_nothing_after_it_is_skipped(
    db: Database,
) -> None:
    seqs = [emit(db, "x", n=n) for n in range(3)]
    calls: list[int] = []

    def handler(e: Event) -> None:
        calls.append(e.seq)
        if e.seq == seqs[1] and calls.count(e.seq) == 1:
            raise RuntimeError("the first delivery of the second event fails")

    consumer = OutboxConsumer(db, "test.fail", {"x": handler})
    with pytest.raises(RuntimeError, match="second event"):
        consumer.poll_once()
    assert consumer.position == seqs[0]
    assert consumer.poll_once() == 2
    assert calls == [seqs[0], seqs[1], seqs[1], seqs[2]]
    assert consumer.position == seqs[2]


def _insert_event(db: Database, seq: int, n: int) -> None:
    with db.transaction() as session:
        session.add(EventRow(seq=seq, type="x", actor="test", payload={"n": n}))


def test_an_event_that_fills_a_hole_later_is_delivered_and_the_cursor_waits_for_it(
    db: Database,
) -> None:
    """Ids n+1 and n+3 commit before n+2 (PostgreSQL: concurrent transactions)."""
    seen: list[int] = []
    consumer = OutboxConsumer(db, "test.hole", {"x": lambda e: seen.append(e.seq)})
    n = emit(db, "x")
    consumer.poll_once()
    assert seen == [n]
    _insert_event(db, n + 1, 1)
    _insert_event(db, n + 3, 3)
    consumer.poll_once()
    assert seen == [n, n + 1, n + 3]  # delivered at once, past the hole
    assert consumer.position == n + 1  # but the durable cursor stays before the hole
    _insert_event(db, n + 2, 2)
    consumer.poll_once()
    assert seen == [n, n + 1, n + 3, n + 2]
    assert consumer.position == n + 3
    # A restart re-reads only after the cursor.
    again: list[int] = []
    OutboxConsumer(db, "test.hole", {"x": lambda e: again.append(e.seq)}).poll_once()
    assert again == []


def test_a_restart_before_the_hole_fills_delivers_what_followed_it_again(db: Database) -> None:
    n = emit(db, "x")
    first: list[int] = []
    OutboxConsumer(db, "test.hole2", {"x": lambda e: first.append(e.seq)}).poll_once()
    _insert_event(db, n + 2, 2)
    OutboxConsumer(db, "test.hole2", {"x": lambda e: first.append(e.seq)}).poll_once()
    assert first == [n, n + 2]
    _insert_event(db, n + 1, 1)
    again: list[int] = []
    OutboxConsumer(db, "test.hole2", {"x": lambda e: again.append(e.seq)}).poll_once()
    assert again == [n + 1, n + 2]  # the late one, and the one past the hole once more


def test_a_hole_never_filled_is_given_up_after_gap_s(db: Database) -> None:
    seen: list[int] = []
    consumer = OutboxConsumer(db, "test.gap", {"x": lambda e: seen.append(e.seq)}, gap_s=0.0)
    n = emit(db, "x")
    _insert_event(db, n + 2, 2)  # n + 1 rolled back: never comes
    consumer.poll_once()
    assert seen == [n, n + 2]
    assert consumer.position == n + 2


def test_a_transaction_that_commits_after_a_later_one_is_not_missed(pg_url: str) -> None:
    """The real race on PostgreSQL: the earlier id commits last."""
    db = Database(pg_url)
    upgrade(db.engine)
    try:
        seen: list[int] = []
        consumer = OutboxConsumer(db, "test.race", {"x": lambda e: seen.append(e.seq)})
        consumer.prime()
        slow = db.engine.connect()
        tx = slow.begin()
        slow.execute(insert(EventRow).values(type="x", actor="slow", payload={}))
        early = slow.execute(select(EventRow.seq).where(EventRow.actor == "slow")).scalar_one()
        late = emit(db, "x")
        consumer.poll_once()
        assert seen == [late] and late > early
        tx.commit()
        slow.close()
        consumer.poll_once()
        assert seen == [late, early]
        assert consumer.position == late
    finally:
        db.dispose()


_KILLED_CONSUMER = """
import os, signal, sys
from sqlalchemy import Column, Integer, MetaData, Table, insert
from sqlalchemy.exc import IntegrityError
from modelyard.core.db import Database
from modelyard.core.outbox import OutboxConsumer

url, log_path, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
effects = Table("test_effects", MetaData(), Column("seq", Integer, primary_key=True))
db = Database(url)
handled = 0

def handle(event):
    global handled
    with open(log_path, "a") as log:
        log.write(f"{event.seq}\\n")
    try:  # the effect is idempotent: one row per event
        with db.transaction() as session:
            session.execute(insert(effects).values(seq=event.seq))
    except IntegrityError:
        pass
    handled += 1
    if handled == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

OutboxConsumer(db, "test.killed", {"x": handle}, batch=5).poll_once()
"""


def test_a_consumer_killed_mid_batch_handles_every_event_once_in_effect(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    effects = Table("test_effects", MetaData(), Column("seq", Integer, primary_key=True))
    effects.create(db.engine)
    seqs = [emit(db, "x", n=n) for n in range(8)]
    log_path = tmp_path / "delivered.txt"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_CONSUMER, db_url, str(log_path), "3"],
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    first_run = [int(line) for line in log_path.read_text().split()]
    assert first_run == seqs[:3]  # killed in the middle of its first batch of five

    def handle(event: Event) -> None:
        with log_path.open("a") as log:
            log.write(f"{event.seq}\n")
        try:
            with db.transaction() as session:
                session.execute(insert(effects).values(seq=event.seq))
        except IntegrityError:
            pass

    restarted = OutboxConsumer(db, "test.killed", {"x": handle}, batch=5)
    while restarted.poll_once():
        pass
    delivered = [int(line) for line in log_path.read_text().split()]
    assert sorted(set(delivered)) == seqs  # every event delivered
    assert delivered == seqs[:3] + seqs  # the unacknowledged ones again: at least once
    with db.transaction(write=False) as session:
        done = list(session.scalars(select(effects.c.seq).order_by(effects.c.seq)))
    assert done == seqs  # once each in effect
    assert restarted.position == seqs[-1]


class Waker(Controller):
    name = "test.waker"
    events = {"thing.changed": lambda payload: [str(payload["key"])]}

    def __init__(self, db: Database) -> None:
        super().__init__(db, resync_s=3600)
        self.seen: list[str] = []
        self.changed = threading.Condition()

    def keys(self) -> Iterable[str]:
        return ()

    def reconcile(self, key: str) -> float | None:
        with self.changed:
            self.seen.append(key)
            self.changed.notify_all()
        return None


_OTHER_PROCESS_WRITE = """
import sys
from modelyard.core.db import Database
from modelyard.core.events import write_events

db = Database(sys.argv[1])
with db.transaction() as session:
    write_events(session, "cli", [("thing.changed", {"key": sys.argv[2]})])
db.dispose()
"""


def test_a_write_in_another_process_wakes_the_controller_for_its_key(
    db: Database, db_url: str
) -> None:
    controller = Waker(db)
    assert controller.start()
    try:
        subprocess.run(
            [sys.executable, "-c", _OTHER_PROCESS_WRITE, db_url, "k-42"],
            cwd=REPO,
            check=True,
            timeout=120,
            env={**os.environ},
        )
        with controller.changed:
            assert controller.changed.wait_for(lambda: "k-42" in controller.seen, WAIT)
        assert controller.seen == ["k-42"]
    finally:
        controller.stop()
