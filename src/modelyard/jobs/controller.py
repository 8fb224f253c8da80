"""The jobs controller: a loop that makes running attempts match the jobs table.

Each pass (every 0.2 s while anything is active, else every second, at once after a
submit or stop commits, and at once when a running attempt's backend reports it ended):

1. every Starting/Running attempt is polled through its backend: its new log lines (and
   the metrics in them) are stored; a requested stop is sent; an attempt that ended is
   finalized — logs drained, ``model/`` and ``output/`` stored as artifacts, the state
   machine advanced (retrying per the job's policy);
2. Pending jobs are admitted oldest first while their CPUs, memory and GPUs fit in their
   backend's capacity, and their attempts launched.

Launching and finalizing run on a small thread pool so a slow venv build or a large model
upload does not hold up the other jobs' logs. Between passes the loop watches the
attempts it saw running with their backend's ``poll`` alone (no database work), as often
as keeps that watch under ~2% of one core (every 20 ms for a local process, less often
where a poll is a remote call), so an attempt that ended is finalized within tens of
milliseconds rather than at the next pass. Every job state change the controller commits
is announced in-process (:func:`job_changed`), so an embedded client waiting on a job
wakes at once instead of at its next poll. Nothing lives only in memory: after a crash
the next controller finds every attempt again through the rows and the backend (see
:mod:`modelyard.compute.backends.local`), so a job is re-attached, finalized, or failed as
lost and retried — never left Running.

One controller runs per ``MODELYARD_HOME`` (an exclusive file lock): a second process on
the same home (an embedded client beside ``modelyard up``) leaves the jobs to the first.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session

from modelyard.compute.backends import backend_class
from modelyard.compute.backends.base import (
    AttemptExit,
    AttemptPlan,
    BackendRef,
    Collected,
    ComputeBackend,
    LaunchFailed,
    Poll,
)
from modelyard.config import Settings
from modelyard.core.artifacts import ArtifactStore
from modelyard.core.db import Database
from modelyard.jobs import ledger
from modelyard.jobs.ledger import ActiveAttempt
from modelyard.jobs.metrics import MetricExtractor
from modelyard.jobs.schemas import TERMINAL_STATES

log = logging.getLogger("modelyard.jobs")

_controllers: weakref.WeakSet[Controller] = weakref.WeakSet()


def notify() -> None:
    """Wake every controller in this process (called after a submit or stop commits)."""
    for controller in list(_controllers):
        controller.wake()
    job_changed()


# Job changes in this process: a counter bumped (and waiters woken) after a job's state or
# logs change is committed. A waiter reads the counter *before* it reads the job, so a
# change committed in between is never missed (it returns at once).
_changes = threading.Condition()
_generation = 0


def job_changed() -> None:
    """Announce that some job's state or log changed (called after the change commits)."""
    global _generation
    with _changes:
        _generation += 1
        _changes.notify_all()


def change_generation() -> int:
    """The current change counter (read it before reading the job you will wait on)."""
    with _changes:
        return _generation


def wait_for_change(since: int, timeout: float) -> bool:
    """Block until a job changes after generation ``since``, at most ``timeout`` seconds.

    True if something changed. Only changes made in this process are seen (a controller in
    another process is not): callers re-read the job after the timeout either way.
    """
    with _changes:
        return _changes.wait_for(lambda: _generation != since, timeout)


def notify_after_commit(session: Session) -> None:
    """Call :func:`notify` once ``session``'s transaction has committed."""
    event.listen(session, "after_commit", lambda _s: notify(), once=True)


class ControlPlane(Protocol):
    """What the controller needs from the runtime."""

    db: Database
    artifacts: ArtifactStore
    settings: Settings


def jobs_root(settings: Settings) -> Path:
    return settings.home / "jobs"


class Controller:
    """Reconciles jobs with their attempts; :meth:`start` runs it in a thread."""

    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        settings: Settings,
        *,
        poll_s: float = 0.2,
        idle_s: float = 1.0,
        workers: int = 4,
        watch_s: float = 0.02,
        watch_share: float = 0.02,
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.settings = settings
        self.root = jobs_root(settings)
        self.poll_s = poll_s
        self.idle_s = idle_s
        # The exit watch between passes: at most every watch_s, and never more often than
        # keeps its polls under watch_share of one core (a poll's cost is measured).
        self.watch_s = watch_s
        self.watch_share = watch_share
        self._watched: list[tuple[ComputeBackend, AttemptPlan, BackendRef]] = []
        self._poll_cost: dict[str, float] = {}
        self._workers = workers
        self._backends: dict[str, ComputeBackend] = {}
        self._extractors: dict[str, MetricExtractor] = {}
        self._busy: set[str] = set()
        self._stop_sent: set[str] = set()
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock_file: IO[bytes] | None = None

    @classmethod
    def for_runtime(cls, runtime: ControlPlane) -> Controller:
        return cls(runtime.db, runtime.artifacts, runtime.settings)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _acquire(self) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / "controller.lock", "wb")  # noqa: SIM115 (held while running)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def start(self) -> bool:
        """Start the loop thread; False if another controller owns this home."""
        if self.running:
            return True
        if not self._acquire():
            log.info("another jobs controller runs on %s; leaving the jobs to it", self.root)
            return False
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="modelyard-jobs")
        self._thread = threading.Thread(target=self._loop, name="modelyard-jobs", daemon=True)
        _controllers.add(self)
        self._thread.start()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop and wait for in-flight launches/finalizations; attempts keep running."""
        _controllers.discard(self)
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for backend in self._backends.values():
            try:
                backend.close()  # e.g. the local backend's warm server
            except Exception:
                log.exception("closing the %s backend failed", backend.url)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                active = self.run_once()
            except Exception:
                log.exception("jobs controller pass failed; retrying")
                active = False
            self._pause(self.poll_s if active else self.idle_s)
            self._wake.clear()

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` or until woken, or until a watched attempt stops running."""
        deadline = time.monotonic() + seconds
        watched = self._watched
        while (left := deadline - time.monotonic()) > 0:
            if not watched:
                self._wake.wait(left)
                return
            interval = max(self.watch_s, self._watch_cost(watched) / self.watch_share)
            if self._wake.wait(min(interval, left)) or self._stopping.is_set():
                return
            if time.monotonic() >= deadline:  # the pass itself polls next
                return
            if self._any_ended(watched):
                return

    def _watch_cost(self, watched: list[tuple[ComputeBackend, AttemptPlan, BackendRef]]) -> float:
        """Seconds of one round of polls over ``watched``, from each backend's last cost."""
        return sum(self._poll_cost.get(backend.url, 0.0) for backend, _, _ in watched)

    def _any_ended(self, watched: list[tuple[ComputeBackend, AttemptPlan, BackendRef]]) -> bool:
        for backend, plan, ref in watched:
            started = time.perf_counter()
            try:
                state = backend.poll(plan, ref).state
            except Exception:  # the next pass polls it again and reports the error
                state = "running"
            finally:
                cost = time.perf_counter() - started
                previous = self._poll_cost.get(backend.url, cost)
                self._poll_cost[backend.url] = 0.8 * previous + 0.2 * cost
            if state != "running":
                return True
        return False

    # -- one pass ---------------------------------------------------------------------------

    def backend(self, url: str) -> ComputeBackend:
        if url not in self._backends:
            self._backends[url] = backend_class(url)(url, self.artifacts, self.settings.home)
        return self._backends[url]

    def plan(self, active: ActiveAttempt) -> AttemptPlan:
        return AttemptPlan(
            job_id=active.job_id,
            job_name=active.job_name,
            attempt=active.number,
            spec=active.spec,
            job_dir=self.root / active.job_id,
        )

    def run_once(self) -> bool:
        """One reconcile pass; True while any attempt is active (poll again soon)."""
        self._watched = []
        attempts = ledger.active_attempts(self.db)
        used: dict[str, dict[str, int]] = {}
        for active in attempts:
            for key, value in ledger.job_usage(active.spec).items():
                used.setdefault(active.backend, {}).setdefault(key, 0)
                used[active.backend][key] += value
            with self._guard:
                if active.attempt_id in self._busy:
                    continue
            try:
                self._reconcile(active)
            except Exception:
                log.exception("reconciling attempt %s of job %s", active.number, active.job_id)
        launched = self._admit(used)
        return bool(attempts) or launched

    def _reconcile(self, active: ActiveAttempt) -> None:
        plan = self.plan(active)
        backend = self.backend(active.backend)
        poll = backend.poll(plan, active.ref)
        if poll.state == "launching":
            return
        if poll.state == "not_launched":
            if active.state == "Running":
                lost = AttemptExit("lost", message="the attempt's working folder disappeared")
                self._submit(active, self._finalize, active, Poll("exited", active.ref, lost))
            elif active.stop_requested:
                stopped = AttemptExit("stopped", message="stopped before it started")
                ledger.finish_attempt(self.db, active.attempt_id, stopped, None)
                job_changed()
            else:
                self._submit(active, self._launch, active)
            return
        if poll.state == "running":
            if active.state == "Starting" or not active.ref:
                ledger.record_launch(self.db, active.attempt_id, poll.ref)
                job_changed()
            self._tail(active, backend, plan, poll.ref, active.offsets, final=False)
            if active.stop_requested and active.attempt_id not in self._stop_sent:
                backend.stop(plan, poll.ref)
                self._stop_sent.add(active.attempt_id)
            self._watched.append((backend, plan, poll.ref))
            return
        self._submit(active, self._finalize, active, poll)

    def _admit(self, used: dict[str, dict[str, int]]) -> bool:
        """Claim Pending jobs oldest first while they fit; strict FIFO per backend."""
        launched = False
        blocked: set[str] = set()
        for job in ledger.pending_jobs(self.db):
            if job.backend in blocked:
                continue
            try:
                capacity = self.backend(job.backend).capacity()
            except Exception:
                log.exception("backend %s is unavailable", job.backend)
                blocked.add(job.backend)
                continue
            need = ledger.job_usage(job.spec)
            have = used.setdefault(job.backend, {"cpus": 0, "memory_mb": 0, "gpus": 0})
            limits = {"cpus": capacity.cpus, "memory_mb": capacity.memory_mb, "gpus": capacity.gpus}
            busy = any(have.get(k, 0) > 0 for k in limits)
            if busy and any(have.get(k, 0) + need[k] > limits[k] for k in limits):
                blocked.add(job.backend)
                continue
            active = ledger.claim(self.db, job.job_id)
            job_changed()  # Starting, or Stopped if its stop was requested meanwhile
            if active is None:
                continue
            for k in limits:
                have[k] = have.get(k, 0) + need[k]
            self._submit(active, self._launch, active)
            launched = True
        return launched

    # -- work on the pool -------------------------------------------------------------------

    def _submit(self, active: ActiveAttempt, fn: Callable[..., None], *args: Any) -> None:
        with self._guard:
            if active.attempt_id in self._busy or self._pool is None:
                return
            self._busy.add(active.attempt_id)

        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("attempt %s of job %s", active.number, active.job_id)
            finally:
                with self._guard:
                    self._busy.discard(active.attempt_id)
                self._wake.set()

        self._pool.submit(run)

    def _launch(self, active: ActiveAttempt) -> None:
        plan = self.plan(active)
        backend = self.backend(active.backend)
        try:
            ref = backend.launch(plan)
        except LaunchFailed as exc:
            self._fail_launch(active, backend, plan, str(exc))
        except Exception as exc:
            log.exception("launching attempt %s of job %s", active.number, active.job_id)
            self._fail_launch(active, backend, plan, f"launching the attempt failed: {exc!r}")
        else:
            ledger.record_launch(self.db, active.attempt_id, ref)
            job_changed()

    def _fail_launch(
        self, active: ActiveAttempt, backend: ComputeBackend, plan: AttemptPlan, message: str
    ) -> None:
        try:
            self._drain(active, backend, plan, {})  # what the launch wrote (its setup log)
        except Exception:  # the backend that failed the launch may not answer this either
            log.exception(
                "reading the log of failed attempt %s of job %s", active.number, active.job_id
            )
        exit = AttemptExit("spawn_error", message=message)
        state = ledger.finish_attempt(self.db, active.attempt_id, exit, None)
        job_changed()
        if state in TERMINAL_STATES:
            self._extractors.pop(active.job_id, None)

    def _finalize(self, active: ActiveAttempt, poll: Poll) -> None:
        plan = self.plan(active)
        backend = self.backend(active.backend)
        ref = poll.ref or active.ref
        if active.state == "Starting" and poll.exit is not None and poll.exit.reason != "lost":
            ledger.record_launch(self.db, active.attempt_id, ref)
        self._drain(active, backend, plan, ref)
        exit = poll.exit or AttemptExit("lost", message="the backend lost the attempt")
        collected: Collected | None = None
        try:
            collected = backend.collect(plan, ref, succeeded=exit.succeeded)
        except Exception as exc:
            log.exception("collecting the results of job %s", active.job_id)
            exit = replace(
                exit, reason="collect_error", message=f"storing the job's results failed: {exc}"
            )
        state = ledger.finish_attempt(self.db, active.attempt_id, exit, collected)
        job_changed()
        self._stop_sent.discard(active.attempt_id)
        if state in TERMINAL_STATES:
            self._extractors.pop(active.job_id, None)
        try:
            backend.cleanup(plan, ref)
        except Exception:
            log.exception("cleaning up attempt %s of job %s", active.number, active.job_id)

    # -- logs -------------------------------------------------------------------------------

    def _extractor(self, active: ActiveAttempt) -> MetricExtractor:
        found = self._extractors.get(active.job_id)
        if found is None:
            found = MetricExtractor([(d.name, d.regex) for d in active.spec.metric_definitions])
            self._extractors[active.job_id] = found
        return found

    def _tail(
        self,
        active: ActiveAttempt,
        backend: ComputeBackend,
        plan: AttemptPlan,
        ref: BackendRef,
        offsets: dict[str, int],
        *,
        final: bool,
    ) -> dict[str, int] | None:
        """Store the next batch of lines; the new offsets, or None if nothing was read."""
        batch = backend.read_logs(plan, ref, offsets, final=final)
        if batch.offsets == offsets:
            return None
        metrics = self._extractor(active).extract(text for _, text in batch.lines)
        if not ledger.append_logs(self.db, active, batch.lines, offsets, batch.offsets, metrics):
            return None
        job_changed()
        return batch.offsets

    def _drain(
        self, active: ActiveAttempt, backend: ComputeBackend, plan: AttemptPlan, ref: BackendRef
    ) -> None:
        """Store every remaining line of an attempt that has ended."""
        offsets = ledger.current_offsets(self.db, active.attempt_id)
        while offsets is not None:
            offsets = self._tail(active, backend, plan, ref, offsets, final=True)


def make_controller(runtime: ControlPlane) -> Controller:
    """The background service the jobs domain declares (started by ``modelyard up``)."""
    return Controller.for_runtime(runtime)
