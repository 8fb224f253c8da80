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
  renewed every ``lease_s / 3`` by a thread of its own) or is released (:meth:`stop`), or
  at once when its holder ran on this host and its process is gone (killed with -9). Lease
  times are the writers' clocks: hosts sharing a database should agree within a second or
  two (``lease_s`` is 15 s). A holder that finds its lease taken stops reconciling, and so
  does one whose renewals stall or fail: no reconcile starts later than ``lease_s`` (less a
  margin of ``lease_s / 5``) after the start of its last successful renewal.
- **The work queue**: a key queued while it waits is queued once; a key queued while it is
  being reconciled is reconciled once more afterwards (never twice at the same time); so
  each key is reconciled by one worker at a time, ``workers`` keys in parallel.
- **Retries**: a reconcile that raises is retried after ``backoff_s``, doubling per
  consecutive failure up to ``max_backoff_s``; a success resets it. Other wake-ups of a key
  in backoff (events, :meth:`enqueue`, resyncs) do not bring its retry forward.
- **Re-checks**: each key has at most one pending re-check (the earliest asked for); a
  reconcile that starts cancels it (the delay it returns sets the next one), so wake-ups
  never multiply a key's re-checks.
- **Wake-ups**: :meth:`enqueue` and :func:`wake` in this process (:func:`notify_after_commit`
  after a transaction commits), the outbox for every process, :meth:`resync` and the
  periodic resync for anything an event did not name.
- **Stop**: :meth:`stop` waits for in-flight reconciles, calls :meth:`Controller.releasing`
  (if it held the lease), releases the lease (a standby takes over at once) and calls
  :meth:`Controller.close`.
- **Hooks**: :meth:`Controller.activated` runs each time this process takes the lease,
  before any reconcile may start (e.g. to name itself where its children look).

How the controllers map onto it: the jobs controller (:mod:`modelyard.jobs.controller`)
has one key for admission (``"admit"``: FIFO over the backends' capacity is a decision
across jobs) and one per job with an active attempt (the job's id: launch, tail and
finalize its current attempt, ``reconcile`` returning the poll interval while it runs);
the endpoints controller's keys are endpoint names (replicas, rollouts and autoscaling
reconcilers of one endpoint); the job-kind finishers' are job ids.
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
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel
from sqlalchemy import delete, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.core.control_store import ControllerLeaseRow
from modelyard.core.db import Database, utcnow
from modelyard.core.operations import Operation, Principal
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
        if row.holder != self.holder and row.expires_at > now and not _holder_gone(row.holder):
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


def _holder_gone(holder: str) -> bool:
    """Whether ``holder`` (see :func:`holder_id`) ran on this host in a process now gone.

    Only a pid that no longer exists counts: a reused pid looks alive, and the lease then
    waits for its expiry as for a holder elsewhere.
    """
    host, _, rest = holder.partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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
            db, f"controller:{self.name}", start_at="end", on_poke=self._kit_tick_now
        )
        for event_type, keys_of in self.events.items():
            self.outbox.on(event_type, self._kit_event_handler(keys_of))
        # The kit's own state is named _kit_* so a subclass's attributes cannot clash with it.
        self._kit_cond = threading.Condition()
        self._kit_queue: deque[str] = deque()
        self._kit_dirty: set[str] = set()  # queued and not yet taken by a worker
        self._kit_processing: set[str] = set()
        self._kit_due: dict[str, float] = {}  # key -> when its one pending re-check is due
        self._kit_delayed: list[tuple[float, int, str]] = []  # heap; stale entries skipped
        self._kit_delay_seq = 0
        self._kit_failures: dict[str, int] = {}
        self._kit_active = False
        self._kit_stopping = threading.Event()
        self._kit_tick = threading.Event()
        self._kit_poked = False  # poll the outbox at the next tick, not at next_poll
        self._kit_resync_due = True
        self._kit_next_renew = 0.0
        self._kit_valid_until = 0.0  # monotonic; workers take no key after it
        self._kit_threads: list[threading.Thread] = []

    # -- what a controller declares ---------------------------------------------------------

    def keys(self) -> Iterable[str]:
        """Every key to look at in a resync (the rows of its desired state)."""
        return ()

    def reconcile(self, key: str) -> float | None:
        """Move ``key`` one step towards its desired state; seconds to look again, or None."""
        raise NotImplementedError

    def activated(self) -> None:
        """This process took the lease: called before any reconcile of this tenure."""

    def releasing(self) -> None:
        """:meth:`stop` of a holder: the workers finished, the lease is still held."""

    def close(self) -> None:
        """Release what the controller holds (called once by :meth:`stop`)."""

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._kit_threads) and self._kit_threads[0].is_alive()

    @property
    def active(self) -> bool:
        """Whether this process holds the lease and reconciles."""
        return self._kit_active and self.running

    def start(self) -> bool:
        """Start the loop; whether it holds the lease now (else it stands by to take over)."""
        if self.running:
            return self._kit_active
        self._kit_stopping.clear()
        self._kit_renew()  # a database error leaves it standing by, retrying
        if self._kit_active:
            try:
                self.outbox.prime()  # events from now on wake it; before: the resync
            except Exception:
                log.exception("controller %s: reading its outbox cursor failed", self.name)
        else:
            log.info("controller %s runs elsewhere; standing by", self.name)
        self._kit_threads = [
            threading.Thread(target=self._kit_manage, name=f"modelyard-{self.name}", daemon=True),
            threading.Thread(
                target=self._kit_hold_lease, name=f"modelyard-{self.name}-lease", daemon=True
            ),
        ]
        self._kit_threads += [
            threading.Thread(target=self._kit_work, name=f"modelyard-{self.name}-{i}", daemon=True)
            for i in range(self.workers)
        ]
        _running.add(self)
        for thread in self._kit_threads:
            thread.start()
        return self._kit_active

    def stop(self, timeout: float = 30.0) -> None:
        """Stop; in-flight reconciles finish, the lease is released, :meth:`close` runs."""
        _running.discard(self)
        self._kit_stopping.set()
        self._kit_tick.set()
        with self._kit_cond:
            self._kit_cond.notify_all()
        for thread in self._kit_threads:
            thread.join(timeout)
        self._kit_threads = []
        if self._kit_active:
            try:
                self.releasing()
            except Exception:
                log.exception("controller %s: releasing what it runs failed", self.name)
            self._kit_active = False
            try:
                self.lease.release()
            except Exception:
                log.exception("controller %s: releasing its lease failed", self.name)
        self.close()

    # -- wake-ups ----------------------------------------------------------------------------

    def enqueue(self, *keys: str) -> None:
        """Reconcile ``keys`` soon (once each, however often they are queued meanwhile)."""
        with self._kit_cond:
            for key in keys:
                self._kit_queue_locked(key)
            self._kit_cond.notify_all()

    def enqueue_after(self, key: str, delay_s: float) -> None:
        """Reconcile ``key`` again in ``delay_s`` seconds (or earlier, if already due so)."""
        with self._kit_cond:
            self._kit_schedule_locked(key, time.monotonic() + delay_s)
        self._kit_tick.set()

    def _kit_in_backoff(self, key: str) -> bool:
        return key in self._kit_failures and key in self._kit_due

    def _kit_queue_locked(self, key: str) -> None:
        if key in self._kit_dirty or self._kit_in_backoff(key):
            return  # queued once; or it waits for its retry, which nothing brings forward
        self._kit_dirty.add(key)
        if key not in self._kit_processing:
            self._kit_queue.append(key)

    def _kit_schedule_locked(self, key: str, when: float) -> None:
        current = self._kit_due.get(key)
        if current is not None and current <= when:
            return
        self._kit_due[key] = when
        self._kit_delay_seq += 1
        heapq.heappush(self._kit_delayed, (when, self._kit_delay_seq, key))
        if len(self._kit_delayed) > 2 * len(self._kit_due) + 1:  # drop the stale entries
            self._kit_delayed = [e for e in self._kit_delayed if self._kit_due.get(e[2]) == e[0]]
            heapq.heapify(self._kit_delayed)

    def resync(self) -> None:
        """Queue every key of :meth:`keys` soon."""
        self._kit_resync_due = True
        self._kit_tick.set()

    def retry_delay(self, failures: int) -> float:
        """Seconds before the next try after ``failures`` failures in a row."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1)))

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or being reconciled (delayed retries aside)."""
        deadline = time.monotonic() + timeout
        with self._kit_cond:
            while self._kit_queue or self._kit_processing or self._kit_resync_due:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._kit_cond.wait(min(left, 0.05))
            return True

    def _kit_tick_now(self) -> None:
        """The outbox was poked (events committed in this process): poll it now."""
        self._kit_poked = True
        self._kit_tick.set()

    def _kit_event_handler(self, keys_of: KeysOf) -> Callable[[Event], None]:
        def handle(event: Event) -> None:
            keys = list(keys_of(event.payload))
            if keys:
                self.enqueue(*keys)

        return handle

    def _kit_set_active(self, active: bool) -> None:
        with self._kit_cond:
            self._kit_active = active
            if active:
                self._kit_resync_due = True
            self._kit_cond.notify_all()

    # -- the lease thread, and the manager thread: resync, outbox, delayed keys -----------

    def _kit_hold_lease(self) -> None:
        while not self._kit_stopping.wait(max(0.0, self._kit_next_renew - time.monotonic())):
            self._kit_renew()

    def _kit_manage(self) -> None:
        next_resync = next_poll = time.monotonic()
        while not self._kit_stopping.is_set():
            self._kit_tick.clear()  # a tick from here on wakes the wait below
            now = time.monotonic()
            if self._kit_active:
                if self._kit_resync_due or now >= next_resync:
                    ok = self._kit_run_resync()
                    next_resync = time.monotonic() + (self.resync_s if ok else self.backoff_s)
                # Only a poke (events committed here) polls the outbox early: other ticks
                # (a re-check scheduled, a resync asked for) must not add database reads.
                if now >= next_poll or self._kit_poked:
                    self._kit_poked = False
                    try:
                        self.outbox.poll_once()
                    except Exception:
                        log.exception("controller %s: reading the outbox failed", self.name)
                    next_poll = time.monotonic() + self.poll_s
                self._kit_release_delayed()
            deadline = now + 1.0  # taking over sets the tick
            if self._kit_active:
                deadline = min(deadline, next_poll, next_resync)
            with self._kit_cond:
                if self._kit_delayed and self._kit_active:
                    deadline = min(deadline, self._kit_delayed[0][0])
            self._kit_tick.wait(max(0.0, deadline - time.monotonic()))

    def _kit_renew(self) -> None:
        started = time.monotonic()
        try:
            held = self.lease.acquire()
        except Exception:
            log.exception("controller %s: renewing its lease failed", self.name)
            held = False
        if held:
            with self._kit_cond:
                # The row expires ttl_s after a moment later than ``started``; the margin
                # covers the clocks of the hosts sharing the database.
                self._kit_valid_until = started + self.lease.ttl_s * 0.8
                self._kit_cond.notify_all()
        if held and not self._kit_active:
            try:
                self.activated()
            except Exception:  # it holds the lease all the same; the hook logs its trouble
                log.exception("controller %s: its activation hook failed", self.name)
        if held != self._kit_active:
            if held:
                log.info("controller %s: took over", self.name)
            else:
                log.warning("controller %s: lost its lease; standing by", self.name)
            self._kit_set_active(held)
            self._kit_poked = held  # taking over: read the outbox at once
            self._kit_tick.set()
        self._kit_next_renew = time.monotonic() + self.lease.ttl_s / 3

    def _kit_run_resync(self) -> bool:
        """Queue every key; False if listing them failed (tried again after a backoff)."""
        try:
            keys = list(self.keys())
            if keys:
                self.enqueue(*keys)
        except Exception:
            log.exception("controller %s: listing its keys failed; retrying", self.name)
            return False
        finally:
            with self._kit_cond:
                self._kit_resync_due = False
                self._kit_cond.notify_all()
        return True

    def _kit_release_delayed(self) -> None:
        now = time.monotonic()
        due: list[str] = []
        with self._kit_cond:
            while self._kit_delayed and self._kit_delayed[0][0] <= now:
                when, _, key = heapq.heappop(self._kit_delayed)
                if self._kit_due.get(key) == when:  # else superseded or cancelled
                    del self._kit_due[key]
                    due.append(key)
        if due:
            self.enqueue(*due)

    # -- the workers ----------------------------------------------------------------------

    def _kit_take(self) -> str | None:
        with self._kit_cond:
            while not self._kit_stopping.is_set() and not self._kit_may_take():
                left = self._kit_valid_until - time.monotonic()
                self._kit_cond.wait(min(1.0, left) if left > 0 else 1.0)
            if self._kit_stopping.is_set():
                return None
            key = self._kit_queue.popleft()
            self._kit_dirty.discard(key)
            self._kit_processing.add(key)
            self._kit_due.pop(key, None)  # this reconcile is the re-check
            return key

    def _kit_may_take(self) -> bool:
        """Whether a worker may start a reconcile: work queued, and the lease surely ours."""
        return (
            self._kit_active and bool(self._kit_queue) and time.monotonic() < self._kit_valid_until
        )

    def _kit_done(self, key: str) -> None:
        with self._kit_cond:
            self._kit_processing.discard(key)
            if self._kit_in_backoff(key):
                self._kit_dirty.discard(key)  # woken meanwhile: its retry covers that
            elif key in self._kit_dirty:
                self._kit_queue.append(key)
            self._kit_cond.notify_all()

    def _kit_work(self) -> None:
        while (key := self._kit_take()) is not None:
            try:
                again = self.reconcile(key)
            except Exception:
                with self._kit_cond:
                    failures = self._kit_failures.get(key, 0) + 1
                    self._kit_failures[key] = failures
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
                with self._kit_cond:
                    self._kit_failures.pop(key, None)
                if again is not None:
                    self.enqueue_after(key, again)
            finally:
                self._kit_done(key)


class OperationsHost(Protocol):
    """What a controller that calls operations needs from the runtime (``Runtime`` is one)."""

    db: Database
    operations: dict[str, Operation[Any, Any]]

    def execute(
        self, op: Operation[Any, Any], req: BaseModel, principal: Principal, *, origin: str
    ) -> Any: ...


class OperationController(Controller):
    """A controller that acts through the platform's operations, as its own principal.

    It declares ``permissions`` (exactly what its calls need) besides what every
    controller declares; :meth:`call` runs an operation as ``system:<name>`` with those
    permissions: checked by the runtime as for any caller, and audited with origin
    ``controller:<name>``. So a controller can do only what it declared, and the audit log
    says which controller did it.
    """

    permissions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, runtime: OperationsHost, **kwargs: Any) -> None:
        super().__init__(runtime.db, **kwargs)
        self.runtime = runtime
        self.principal = system_principal(self.name, self.permissions)

    def call(self, operation: str, req: BaseModel) -> Any:
        """Run the operation named ``operation`` with ``req`` as this controller."""
        op = self.runtime.operations[operation]
        return self.runtime.execute(op, req, self.principal, origin=f"controller:{self.name}")
