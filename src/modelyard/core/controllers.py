"""The controller kit: the machinery every control loop stands on.

A controller is level-triggered and idempotent (as Kubernetes' controller-runtime): it
declares

- ``name`` — one active controller of a name runs per database;
- :meth:`Controller.keys` — the keys whose rows it must look at (its desired state), read
  at start, after taking over, and every ``resync_s``;
- :meth:`Controller.reconcile` — given a key, read the rows, move one step towards the
  desired state; it may be called again at any time with the same key and must then do
  nothing harmful. It may return a number of seconds after which to look at the key again
  (e.g. while a job it waits for runs);
- ``events`` — event type → a function of the event's payload giving the keys it names.
  The kit reads the outbox (:mod:`modelyard.core.outbox`) with a durable cursor of its
  own and queues those keys, so a write in any process or on any host that shares the
  database wakes it within a poll;
- the transition tables of the state machines it drives (:mod:`modelyard.core.states`).

The kit owns the rest:

- **The lease** (``controller_leases``): the process holding a controller's lease runs it;
  others stand by and take over when the lease expires (its holder died or hung: it is
  renewed every ``lease_s / 3`` while the loop runs) or is released (:meth:`stop`). Lease
  times are the writers' clocks: hosts sharing a database should agree within a second or
  two (``lease_s`` is 15 s). A holder that finds its lease taken stops reconciling.
- **The work queue**: a key queued while it waits is queued once; a key queued while it is
  being reconciled is reconciled once more afterwards (never twice at the same time); so
  each key is reconciled by one worker at a time, ``workers`` keys in parallel.
- **Retries**: a reconcile that raises is retried after ``backoff_s``, doubling per
  consecutive failure up to ``max_backoff_s``; a success resets it.
- **Wake-ups**: :meth:`enqueue` and :func:`wake` in this process (:func:`notify_after_commit`
  after a transaction commits), the outbox for every process, :meth:`resync` and the
  periodic resync for anything an event did not name.
- **Stop**: :meth:`stop` waits for in-flight reconciles, releases the lease (a standby
  takes over at once) and calls :meth:`Controller.close`.

How today's controllers map onto it (their migration is the next step): the endpoints
controller's keys are endpoint names (replicas, rollouts and autoscaling reconcilers of
one endpoint); the jobs controller's admission is one key (``"admit"``: FIFO over the
backends' capacity is a decision across jobs), each running attempt another (its id:
launch and finalize on the pool, ``reconcile`` returning the poll interval while it
runs). Both file locks become the lease.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from sqlalchemy import delete, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.core.control_store import ControllerLeaseRow
from modelyard.core.db import Database, utcnow
from modelyard.core.operations import Principal
from modelyard.core.outbox import Event, OutboxConsumer

log = logging.getLogger("modelyard.controllers")

KeysOf = Callable[[dict[str, Any]], Iterable[str]]


def system_principal(controller: str, permissions: Iterable[str]) -> Principal:
    """The principal a controller acts as: user ``system:<controller>``, role ``system``.

    It holds exactly the permissions the controller declares (no wildcard), so an audit
    event shows which controller acted and it can do nothing else. No token resolves to
    it: it exists only inside the process that runs the controller.
    """
    return Principal(user=f"system:{controller}", role="system", permissions=frozenset(permissions))


def holder_id() -> str:
    """This process, as a lease holder: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One named lease in ``controller_leases``: held by one holder until ``expires_at``."""

    def __init__(self, db: Database, name: str, holder: str, ttl_s: float) -> None:
        self.db = db
        self.name = name
        self.holder = holder
        self.ttl_s = ttl_s

    def acquire(self) -> bool:
        """Take the lease if it is free or expired, or renew it if ours; whether we hold it."""
        try:
            with self.db.transaction() as session:
                return self._acquire(session)
        except IntegrityError:  # another holder inserted the row at the same moment
            return False

    def _acquire(self, session: Session) -> bool:
        now = utcnow()
        expires = now + dt.timedelta(seconds=self.ttl_s)
        row = session.get(ControllerLeaseRow, self.name, with_for_update=True)
        if row is None:
            session.add(ControllerLeaseRow(name=self.name, holder=self.holder, expires_at=expires))
            session.flush()
            return True
        if row.holder != self.holder and row.expires_at > now:
            return False
        if row.holder != self.holder:
            log.info("controller %s: taking over the lease of %s", self.name, row.holder)
        row.holder = self.holder
        row.expires_at = expires
        return True

    def release(self) -> None:
        with self.db.transaction() as session:
            session.execute(
                delete(ControllerLeaseRow).where(
                    ControllerLeaseRow.name == self.name, ControllerLeaseRow.holder == self.holder
                )
            )


_running: weakref.WeakSet[Controller] = weakref.WeakSet()


def wake(name: str, *keys: str) -> None:
    """Queue ``keys`` (or, with none, a resync) on the running controllers ``name`` here."""
    for controller in list(_running):
        if controller.name == name:
            if keys:
                controller.enqueue(*keys)
            else:
                controller.resync()


def notify_after_commit(session: Session, name: str, *keys: str) -> None:
    """:func:`wake` once ``session``'s transaction has committed."""
    event.listen(session, "after_commit", lambda _s: wake(name, *keys), once=True)


class Controller:
    """Subclass it, declare ``name``, :meth:`keys`, :meth:`reconcile` and ``events``."""

    name: ClassVar[str] = ""
    events: ClassVar[Mapping[str, KeysOf]] = {}

    def __init__(
        self,
        db: Database,
        *,
        workers: int = 4,
        resync_s: float = 30.0,
        lease_s: float = 15.0,
        poll_s: float = 0.25,
        backoff_s: float = 0.5,
        max_backoff_s: float = 60.0,
    ) -> None:
        if not self.name:
            raise TypeError(f"{type(self).__name__} must set the class attribute 'name'")
        self.db = db
        self.workers = workers
        self.resync_s = resync_s
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.lease = Lease(db, self.name, holder_id(), lease_s)
        self.outbox = OutboxConsumer(
            db, f"controller:{self.name}", start_at="end", on_poke=self._tick_now
        )
        for event_type, keys_of in self.events.items():
            self.outbox.on(event_type, self._event_handler(keys_of))
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()  # queued and not yet taken by a worker
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._delay_seq = 0
        self._failures: dict[str, int] = {}
        self._active = False
        self._stopping = threading.Event()
        self._tick = threading.Event()
        self._resync_due = True
        self._threads: list[threading.Thread] = []

    # -- what a controller declares ---------------------------------------------------------

    def keys(self) -> Iterable[str]:
        """Every key to look at in a resync (the rows of its desired state)."""
        return ()

    def reconcile(self, key: str) -> float | None:
        """Move ``key`` one step towards its desired state; seconds to look again, or None."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the controller holds (called once by :meth:`stop`)."""

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._threads) and self._threads[0].is_alive()

    @property
    def active(self) -> bool:
        """Whether this process holds the lease and reconciles."""
        return self._active and self.running

    def start(self) -> bool:
        """Start the loop; whether it holds the lease now (else it stands by to take over)."""
        if self.running:
            return self._active
        self._stopping.clear()
        self._set_active(self.lease.acquire())
        if self._active:
            self.outbox.prime()  # events from now on wake it; what came before: the resync
        else:
            log.info("controller %s runs elsewhere; standing by", self.name)
        self._next_renew = time.monotonic() + self.lease.ttl_s / 3
        self._threads = [
            threading.Thread(target=self._manage, name=f"modelyard-{self.name}", daemon=True)
        ]
        self._threads += [
            threading.Thread(target=self._work, name=f"modelyard-{self.name}-{i}", daemon=True)
            for i in range(self.workers)
        ]
        _running.add(self)
        for thread in self._threads:
            thread.start()
        return self._active

    def stop(self, timeout: float = 30.0) -> None:
        """Stop; in-flight reconciles finish, the lease is released, :meth:`close` runs."""
        _running.discard(self)
        self._stopping.set()
        self._tick.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        if self._active:
            self._active = False
            try:
                self.lease.release()
            except Exception:
                log.exception("controller %s: releasing its lease failed", self.name)
        self.close()

    # -- wake-ups ----------------------------------------------------------------------------

    def enqueue(self, *keys: str) -> None:
        """Reconcile ``keys`` soon (once each, however often they are queued meanwhile)."""
        with self._cond:
            for key in keys:
                if key in self._dirty:
                    continue
                self._dirty.add(key)
                if key not in self._processing:
                    self._queue.append(key)
            self._cond.notify_all()

    def enqueue_after(self, key: str, delay_s: float) -> None:
        """Reconcile ``key`` again in ``delay_s`` seconds."""
        with self._cond:
            self._delay_seq += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay_s, self._delay_seq, key))
        self._tick.set()

    def resync(self) -> None:
        """Queue every key of :meth:`keys` soon."""
        self._resync_due = True
        self._tick.set()

    def retry_delay(self, failures: int) -> float:
        """Seconds before the next try after ``failures`` failures in a row."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1)))

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or being reconciled (delayed retries aside)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._processing or self._resync_due:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def _tick_now(self) -> None:
        self._tick.set()

    def _event_handler(self, keys_of: KeysOf) -> Callable[[Event], None]:
        def handle(event: Event) -> None:
            keys = list(keys_of(event.payload))
            if keys:
                self.enqueue(*keys)

        return handle

    def _set_active(self, active: bool) -> None:
        with self._cond:
            self._active = active
            if active:
                self._resync_due = True
            self._cond.notify_all()

    # -- the manager thread: lease, resync, outbox, delayed keys -------------------------

    def _manage(self) -> None:
        next_resync = next_poll = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= self._next_renew or not self._active:
                self._renew()
            if self._active:
                if self._resync_due or now >= next_resync:
                    ok = self._run_resync()
                    next_resync = time.monotonic() + (self.resync_s if ok else self.backoff_s)
                if now >= next_poll or self._tick.is_set():
                    self._tick.clear()
                    try:
                        self.outbox.poll_once()
                    except Exception:
                        log.exception("controller %s: reading the outbox failed", self.name)
                    next_poll = time.monotonic() + self.poll_s
                self._release_delayed()
            deadline = self._next_renew
            if self._active:
                deadline = min(deadline, next_poll, next_resync)
            with self._cond:
                if self._delayed and self._active:
                    deadline = min(deadline, self._delayed[0][0])
            self._tick.wait(max(0.0, deadline - time.monotonic()))

    def _renew(self) -> None:
        try:
            held = self.lease.acquire()
        except Exception:
            log.exception("controller %s: renewing its lease failed", self.name)
            held = False
        if held != self._active:
            if held:
                log.info("controller %s: took over", self.name)
            else:
                log.warning("controller %s: lost its lease; standing by", self.name)
            self._set_active(held)
        self._next_renew = time.monotonic() + self.lease.ttl_s / 3

    def _run_resync(self) -> bool:
        """Queue every key; False if listing them failed (tried again after a backoff)."""
        try:
            keys = list(self.keys())
            if keys:
                self.enqueue(*keys)
        except Exception:
            log.exception("controller %s: listing its keys failed; retrying", self.name)
            return False
        finally:
            with self._cond:
                self._resync_due = False
                self._cond.notify_all()
        return True

    def _release_delayed(self) -> None:
        now = time.monotonic()
        due: list[str] = []
        with self._cond:
            while self._delayed and self._delayed[0][0] <= now:
                due.append(heapq.heappop(self._delayed)[2])
        if due:
            self.enqueue(*due)

    # -- the workers ----------------------------------------------------------------------

    def _take(self) -> str | None:
        with self._cond:
            while not self._stopping.is_set() and not (self._active and self._queue):
                self._cond.wait(1.0)
            if self._stopping.is_set():
                return None
            key = self._queue.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def _done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
            self._cond.notify_all()

    def _work(self) -> None:
        while (key := self._take()) is not None:
            try:
                again = self.reconcile(key)
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = self.retry_delay(failures)
                log.exception(
                    "controller %s: reconciling %s failed (%d in a row); retrying in %.1f s",
                    self.name,
                    key,
                    failures,
                    delay,
                )
                self.enqueue_after(key, delay)
            else:
                self._failures.pop(key, None)
                if again is not None:
                    self.enqueue_after(key, again)
            finally:
                self._done(key)
