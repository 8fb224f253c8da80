"""The controller kit: de-duplicated keys, retries with backoff, the lease, stop."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from modelyard.core.control_store import ControllerLeaseRow
from modelyard.core.controllers import Controller, system_principal, wake
from modelyard.core.db import Database, utcnow
from modelyard.migrations import upgrade

WAIT = 10.0  # seconds a test waits for something that should happen at once


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    upgrade(database.engine)
    yield database
    database.dispose()


class Recorder(Controller):
    name = "test.recorder"

    def __init__(self, db: Database, **kwargs: object) -> None:
        super().__init__(db, **kwargs)  # type: ignore[arg-type]
        self.calls: Counter[str] = Counter()
        self.declined: Counter[str] = Counter()  # keys a worker saw queued and left there
        self.lock = threading.Lock()
        self.inside = threading.Event()  # set while a "slow" reconcile runs
        self.release = threading.Event()
        self.seen = threading.Condition()
        self.fail_first: dict[str, int] = {}
        self.delays: list[float] = []
        self.listed: list[str] = []
        self.closed = 0
        self.resyncs = 0
        self.again: float | None = None  # what reconcile returns

    def keys(self) -> Iterable[str]:
        with self.seen:
            self.resyncs += 1
            self.seen.notify_all()
        return list(self.listed)

    def reconcile(self, key: str) -> float | None:
        with self.seen:
            self.calls[key] += 1
            self.seen.notify_all()
        if key == "slow" and self.calls[key] == 1:
            self.inside.set()
            assert self.release.wait(WAIT)
        if self.fail_first.get(key, 0) >= self.calls[key]:
            raise RuntimeError(f"reconciling {key} failed on purpose")
        return self.again

    def _kit_may_take(self) -> bool:
        may = super()._kit_may_take()
        if not may and self._kit_queue:  # called with _kit_cond held (then self.seen)
            with self.seen:
                self.declined.update(self._kit_queue)
                self.seen.notify_all()
        return may

    def wait_declined(self, key: str) -> bool:
        """Wait until a worker saw ``key`` queued and decided it may not take it."""
        with self.seen:
            return self.seen.wait_for(lambda: self.declined[key] >= 1, WAIT)

    def enqueue_after(self, key: str, delay_s: float) -> None:
        self.delays.append(delay_s)
        super().enqueue_after(key, delay_s)

    def close(self) -> None:
        self.closed += 1

    def wait_resyncs(self, n: int) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: self.resyncs >= n, WAIT)

    def wait_calls(self, key: str, n: int) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: self.calls[key] >= n, WAIT)


def test_a_key_queued_while_waiting_or_busy_is_reconciled_once_more(db: Database) -> None:
    c = Recorder(db, workers=1)
    c.start()
    try:
        c.enqueue("slow")
        assert c.inside.wait(WAIT)
        c.enqueue("a", "a", "a")  # waiting behind "slow": once
        c.enqueue("slow", "slow")  # woken during its own reconcile: once more, after it
        c.release.set()
        assert c.wait_idle(WAIT)
        assert c.calls == {"slow": 2, "a": 1}
    finally:
        c.stop()


def test_keys_are_reconciled_one_at_a_time_each_but_in_parallel(db: Database) -> None:
    c = Recorder(db, workers=2)
    c.start()
    try:
        c.enqueue("slow")
        assert c.inside.wait(WAIT)
        c.enqueue("b")  # another worker takes it while "slow" is still running
        assert c.wait_calls("b", 1)
        assert c.calls["slow"] == 1
        c.release.set()
        assert c.wait_idle(WAIT)
    finally:
        c.stop()


def test_a_failing_reconcile_is_retried_with_doubling_backoff(db: Database) -> None:
    c = Recorder(db, backoff_s=0.01, max_backoff_s=0.03)
    c.fail_first = {"x": 3}
    c.start()
    try:
        c.enqueue("x")
        assert c.wait_calls("x", 4)
        assert c.wait_idle(WAIT)
        assert c.calls["x"] == 4
        assert c.delays == [0.01, 0.02, 0.03]  # doubled, then capped; none after success
    finally:
        c.stop()
    assert c.retry_delay(50) == 0.03


def test_resync_reconciles_every_key_of_the_desired_state(db: Database) -> None:
    c = Recorder(db)
    c.listed = ["k1", "k2"]
    c.start()
    try:
        assert c.wait_calls("k1", 1) and c.wait_calls("k2", 1)
        c.listed = ["k3"]
        c.resync()
        assert c.wait_calls("k3", 1)
        assert c.wait_idle(WAIT)
        wake(Recorder.name, "k4")  # in-process wake-up by name
        assert c.wait_calls("k4", 1)
    finally:
        c.stop()


def _lease(db: Database) -> ControllerLeaseRow | None:
    with db.transaction(write=False) as session:
        row = session.scalar(
            select(ControllerLeaseRow).where(ControllerLeaseRow.name == Recorder.name)
        )
        if row is not None:
            session.expunge(row)
        return row


def _hold(db: Database, holder: str, expires: dt.datetime) -> None:
    with db.transaction() as session:
        row = session.get(ControllerLeaseRow, Recorder.name)
        if row is None:
            session.add(ControllerLeaseRow(name=Recorder.name, holder=holder, expires_at=expires))
        else:
            row.holder, row.expires_at = holder, expires


def test_a_stale_lease_of_a_dead_holder_is_taken_over_at_start(db: Database) -> None:
    _hold(db, "deadhost:4242:0000", utcnow() - dt.timedelta(seconds=1))
    c = Recorder(db)
    c.listed = ["k"]
    assert c.start() is True
    try:
        lease = _lease(db)
        assert lease is not None and lease.holder == c.lease.holder
        assert c.wait_calls("k", 1)
    finally:
        c.stop()
    assert _lease(db) is None  # released: a standby takes over at once


def test_a_live_lease_elsewhere_means_standing_by_until_it_expires(db: Database) -> None:
    _hold(db, "otherhost:1:aaaa", utcnow() + dt.timedelta(hours=1))
    c = Recorder(db, lease_s=0.3)
    c.listed = ["k"]
    assert c.start() is False
    try:
        assert not c.active
        c.enqueue("k")
        assert c.wait_declined("k")  # a worker looked at it and left it queued
        assert not c.wait_idle(0.3)  # queued, but nobody here may reconcile it
        assert c.calls["k"] == 0
        _hold(db, "otherhost:1:aaaa", utcnow() - dt.timedelta(seconds=1))  # the holder died
        assert c.wait_calls("k", 1)
        assert c.active
        lease = _lease(db)
        assert lease is not None and lease.holder == c.lease.holder
    finally:
        c.stop()


def test_a_second_controller_takes_over_when_the_first_stops(db: Database) -> None:
    first, second = Recorder(db, lease_s=0.3), Recorder(db, lease_s=0.3)
    second.listed = ["k"]
    assert first.start() is True
    try:
        assert second.start() is False
        first.stop()
        assert second.wait_calls("k", 1)  # took the released lease and resynced
        assert second.active
    finally:
        first.stop()
        second.stop()


def test_a_holder_whose_lease_was_taken_stops_reconciling(db: Database) -> None:
    c = Recorder(db, lease_s=0.3)
    c.start()
    try:
        _hold(db, "otherhost:2:bbbb", utcnow() + dt.timedelta(hours=1))
        with c._kit_cond:
            assert c._kit_cond.wait_for(lambda: not c._kit_active, WAIT)
        c.enqueue("k")
        assert c.wait_declined("k")  # a worker looked at it and left it queued
        assert not c.wait_idle(0.3)
        assert c.calls["k"] == 0
    finally:
        c.stop()
    lease = _lease(db)
    assert lease is not None and lease.holder == "otherhost:2:bbbb"  # not released by us


def test_stop_waits_for_the_reconcile_in_flight_then_closes(db: Database) -> None:
    c = Recorder(db)
    c.start()
    c.enqueue("slow")
    assert c.inside.wait(WAIT)
    finished_at_stop: list[bool] = []

    def stop() -> None:
        c.stop()
        finished_at_stop.append(c.calls["slow"] == 1 and not c.release.is_set())

    stopper = threading.Thread(target=stop)
    stopper.start()
    c.release.set()
    stopper.join(WAIT)
    assert finished_at_stop == [False]  # stop returned only after the release
    assert c.closed == 1
    assert not c.running
    assert _lease(db) is None


def test_a_database_that_fails_at_start_leaves_it_standing_by_until_it_works(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'not-migrated.db'}")  # no controller_leases yet
    c = Recorder(db, lease_s=0.3)
    c.listed = ["k"]
    try:
        assert c.start() is False  # no exception out of start()
        upgrade(db.engine)
        assert c.wait_calls("k", 1)  # the next renewal took the lease
    finally:
        c.stop()
        db.dispose()


def test_the_system_principal_holds_only_what_it_declares() -> None:
    p = system_principal("transforms.finisher", ["jobs.read", "datasets.write"])
    assert p.user == "system:transforms.finisher" and p.role == "system"
    assert p.can("jobs.read") and p.can("datasets.write")
    assert not p.can("jobs.write") and not p.can("users.admin")


def test_a_controller_needs_a_name(db: Database) -> None:
    class Nameless(Controller):
        pass

    with pytest.raises(TypeError, match="name"):
        Nameless(db)


def test_wake_ups_do_not_multiply_a_keys_re_checks(db: Database) -> None:
    c = Recorder(db, resync_s=0.02)
    c.listed, c.again = ["k"], 0.2  # re-check every 0.2 s, and a resync every 0.02 s
    started = time.monotonic()
    c.start()
    try:
        assert c.wait_resyncs(40)
        with c.seen:
            calls, resyncs = c.calls["k"], c.resyncs
        elapsed = time.monotonic() - started
        # At most one reconcile per resync plus the one re-check chain (the bug: a new
        # chain per reconcile, so hundreds).
        assert calls <= resyncs + elapsed / 0.2 + 2
        with c._kit_cond:
            assert set(c._kit_due) <= {"k"}
            assert len(c._kit_delayed) <= 3
    finally:
        c.stop()


def test_a_failing_key_keeps_its_backoff_under_resyncs(db: Database) -> None:
    c = Recorder(db, resync_s=0.02, backoff_s=60.0, max_backoff_s=60.0)
    c.listed, c.fail_first = ["x"], {"x": 100}
    c.start()
    try:
        assert c.wait_calls("x", 1)
        with c.seen:
            seen = c.resyncs
        assert c.wait_resyncs(seen + 20)
        assert c.calls["x"] == 1  # the resyncs did not bring its retry forward
        assert c.delays == [60.0]
    finally:
        c.stop()


def test_no_reconcile_starts_once_the_lease_may_have_expired(db: Database) -> None:
    c = Recorder(db, lease_s=0.3)
    assert c.start() is True
    stalled, unblock = threading.Event(), threading.Event()
    renew = c.lease.acquire

    def stalled_renew() -> bool:
        stalled.set()
        assert unblock.wait(WAIT)
        return renew()

    try:
        c.lease.acquire = stalled_renew  # type: ignore[method-assign]
        assert stalled.wait(WAIT)
        valid_until = c._kit_valid_until
        time.sleep(max(0.0, valid_until - time.monotonic()))  # wait for it to lapse
        c.enqueue("k")
        assert c.wait_declined("k")  # a worker looked at it and left it queued
        assert not c.wait_idle(0.3)  # queued, but the lease is not surely ours
        assert c.calls["k"] == 0
        c.lease.acquire = renew  # type: ignore[method-assign]
        unblock.set()
        assert c.wait_calls("k", 1)  # renewed: reconciling again
    finally:
        unblock.set()
        c.stop()


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_lease_of_a_process_gone_from_this_host_is_taken_over_at_once(
    db: Database,
) -> None:
    # A holder killed with -9 leaves its lease unexpired: on its own host it is seen dead.
    _hold(db, f"{socket.gethostname()}:{_dead_pid()}:dead", utcnow() + dt.timedelta(hours=1))
    c = Recorder(db, lease_s=0.3)
    assert c.start() is True
    c.stop()
    # Elsewhere (or alive here) a holder is waited for until its lease expires.
    _hold(db, f"{socket.gethostname()}:{os.getpid()}:live", utcnow() + dt.timedelta(hours=1))
    other = Recorder(db, lease_s=0.3)
    assert other.start() is False
    other.stop()


class Hooked(Recorder):
    def __init__(self, db: Database, **kwargs: object) -> None:
        super().__init__(db, **kwargs)
        self.order: list[str] = []

    def activated(self) -> None:
        self.order.append(f"activated calls={sum(self.calls.values())}")

    def releasing(self) -> None:
        lease = _lease(self.db)
        held = lease is not None and lease.holder == self.lease.holder
        self.order.append(f"releasing held={held}")

    def close(self) -> None:
        self.order.append("close")


def test_hooks_run_on_taking_the_lease_before_any_reconcile_and_before_releasing_it(
    db: Database,
) -> None:
    c = Hooked(db, lease_s=0.3)
    c.listed = ["k"]
    assert c.start() is True
    assert c.wait_calls("k", 1)
    c.stop()
    assert c.order == ["activated calls=0", "releasing held=True", "close"]
    standby = Hooked(db, lease_s=0.3)
    _hold(db, "otherhost:1:aaaa", utcnow() + dt.timedelta(hours=1))
    assert standby.start() is False
    standby.stop()
    assert standby.order == ["close"]  # it never held the lease
