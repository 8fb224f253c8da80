"""The jobs controller: makes running attempts match the jobs table, on the controller kit.

A :class:`~modelyard.core.controllers.Controller` (lease, work queue, workers, retries,
outbox wake-ups and resync are the kit's) with three kinds of key:

- ``"admit"``: Pending jobs are admitted oldest first while their CPUs, memory and GPUs
  fit in their backend's capacity (strict FIFO per backend: a decision across jobs, so
  one key), each admitted job getting a new attempt (Starting). Queued by the outbox
  event ``job.submitted`` (from any process on the database), after every attempt that
  ends (capacity freed, or a retry waits), and by each resync; while a job waits for
  capacity (or its backend is unreachable) it looks again every ``admit_s``.
- a job id: its current attempt, polled through its backend. Launched if nothing runs
  yet; while it runs its new log lines (and the metrics in them) are stored every
  ``tail_s`` and a requested stop is sent; once it ended it is finalized — logs drained,
  ``model/`` and ``output/`` stored as artifacts, the state machine
  (:mod:`modelyard.jobs.states`) advanced, retrying per the job's policy. Queued when
  admitted, by the outbox event ``job.stop_requested``, by the exit watch, and by each
  resync for every job with an active attempt. Launching and finalizing run on the kit's
  workers, so a slow venv build or a large model upload holds up no other job.
- ``"watch"``: the exit watch. Between two of a job's reconciles it polls the attempts it
  saw running with their backend's ``poll`` alone (no database work), as often as keeps
  that watch under ``watch_share`` of one core (every ``watch_s``, 20 ms, for a local
  process; less often where a poll is a remote call), and queues the job of one that
  ended, so it is finalized within tens of milliseconds rather than at its next tail.
  One reconcile of it watches for up to a second (it holds one worker while attempts
  run).

Every job state change the controller commits is announced in-process
(:func:`job_changed`), so an embedded client waiting on a job wakes at once instead of at
its next poll. The controller acts as ``system:jobs`` (:data:`ledger.CONTROLLER`), the
actor of the events and audit records of its changes. Nothing lives only in memory: after
a crash (or on another process taking over the lease) the controller finds every attempt
again through the rows and the backend (see :mod:`modelyard.compute.backends.local`), so a
job is re-attached, finalized, or failed as lost and retried — never left Running.

One controller runs per database (the kit's lease): a second process on it (an embedded
client beside ``modelyard up``, or a second ``modelyard up``) stands by and takes over
when the first stops or dies. Job folders live under ``<home>/jobs``, so processes that
share a database and run local jobs share the home as well.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

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
from modelyard.core.controllers import Controller
from modelyard.core.db import Database
from modelyard.jobs import ledger
from modelyard.jobs.ledger import ActiveAttempt
from modelyard.jobs.metrics import MetricExtractor
from modelyard.jobs.schemas import TERMINAL_STATES

log = logging.getLogger("modelyard.jobs")

ADMIT = "admit"
WATCH = "watch"


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


def announce_after_commit(session: Session) -> None:
    """Call :func:`job_changed` once ``session``'s transaction has committed.

    (The controller itself is woken by the outbox event the same transaction writes.)
    """
    event.listen(session, "after_commit", lambda _s: job_changed(), once=True)


class ControlPlane(Protocol):
    """What the controller needs from the runtime."""

    db: Database
    artifacts: ArtifactStore
    settings: Settings


def jobs_root(settings: Settings) -> Path:
    return settings.home / "jobs"


def _admit_keys(_payload: dict[str, Any]) -> list[str]:
    return [ADMIT]


def _job_keys(payload: dict[str, Any]) -> list[str]:
    return [str(payload["job"])] if payload.get("job") else []


Watched = tuple[ComputeBackend, AttemptPlan, BackendRef]


class JobsController(Controller):
    """Reconciles jobs with their attempts; :meth:`start` runs it on the kit's threads."""

    name = "jobs"
    events = {"job.submitted": _admit_keys, "job.stop_requested": _job_keys}

    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        settings: Settings,
        *,
        tail_s: float = 0.2,
        admit_s: float = 1.0,
        workers: int = 8,
        watch_s: float = 0.02,
        watch_share: float = 0.02,
        resync_s: float = 30.0,
        **kit: Any,
    ) -> None:
        # A failing reconcile (a backend that does not answer) is retried within seconds:
        # the job's log tailing must not pause for the kit's default minute.
        kit.setdefault("max_backoff_s", 10.0)
        super().__init__(db, workers=workers, resync_s=resync_s, **kit)
        self.artifacts = artifacts
        self.settings = settings
        self.root = jobs_root(settings)
        self.tail_s = tail_s
        self.admit_s = admit_s
        # The exit watch: at most every watch_s, and never more often than keeps its polls
        # under watch_share of one core (a poll's cost is measured).
        self.watch_s = watch_s
        self.watch_share = watch_share
        self.watch_round_s = 1.0
        self._guard = threading.Lock()
        self._watched: dict[str, Watched] = {}  # job id -> its running attempt
        self._poll_cost: dict[str, float] = {}
        self._backends: dict[str, ComputeBackend] = {}
        self._extractors: dict[str, MetricExtractor] = {}
        self._stop_sent: set[str] = set()

    @classmethod
    def for_runtime(cls, runtime: ControlPlane, **kwargs: Any) -> JobsController:
        return cls(runtime.db, runtime.artifacts, runtime.settings, **kwargs)

    # -- what the kit asks -------------------------------------------------------------------

    def keys(self) -> Iterable[str]:
        return [ADMIT, *dict.fromkeys(a.job_id for a in ledger.active_attempts(self.db))]

    def reconcile(self, key: str) -> float | None:
        if key == ADMIT:
            return self._admit()
        if key == WATCH:
            return self._watch()
        return self._reconcile_job(key)

    def stop(self, timeout: float = 600.0) -> None:
        """Stop; in-flight launches and finalizations finish first (attempts keep running).

        The lease is released only after them (up to ``timeout``), so a standby taking
        over never launches an attempt whose launch is still under way here.
        """
        super().stop(timeout)

    def close(self) -> None:
        for backend in self._backends.values():
            try:
                backend.close()  # e.g. the local backend's warm server
            except Exception:
                log.exception("closing the %s backend failed", backend.url)
        self._backends = {}

    # -- helpers -------------------------------------------------------------------------------

    def backend(self, url: str) -> ComputeBackend:
        with self._guard:
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

    # -- admission ------------------------------------------------------------------------------

    def _admit(self) -> float | None:
        """Claim Pending jobs oldest first while they fit; strict FIFO per backend.

        Each claimed job's key is queued (its reconcile launches the attempt). Returns
        ``admit_s`` while a job is left waiting (for capacity, or a backend to answer).
        """
        used: dict[str, dict[str, int]] = {}
        for active in ledger.active_attempts(self.db):
            for k, value in ledger.job_usage(active.spec).items():
                used.setdefault(active.backend, {}).setdefault(k, 0)
                used[active.backend][k] += value
        waiting = False
        blocked: set[str] = set()
        pending = ledger.pending_jobs(self.db)
        for job in pending:
            if job.backend in blocked:
                continue
            try:
                capacity = self.backend(job.backend).capacity()
            except Exception:
                log.exception("backend %s is unavailable", job.backend)
                blocked.add(job.backend)
                waiting = True
                continue
            need = ledger.job_usage(job.spec)
            have = used.setdefault(job.backend, {"cpus": 0, "memory_mb": 0, "gpus": 0})
            limits = {"cpus": capacity.cpus, "memory_mb": capacity.memory_mb, "gpus": capacity.gpus}
            busy = any(have.get(k, 0) > 0 for k in limits)
            if busy and any(have.get(k, 0) + need[k] > limits[k] for k in limits):
                blocked.add(job.backend)
                waiting = True
                continue
            claimed = ledger.claim(self.db, job.job_id)
            job_changed()  # Starting, or Stopped if its stop was requested meanwhile
            if claimed is None:
                continue
            for k in limits:
                have[k] = have.get(k, 0) + need[k]
            self.enqueue(claimed.job_id)
        if len(pending) >= ledger.PENDING_PAGE:
            waiting = True  # more wait behind this page
        return self.admit_s if waiting else None

    # -- one job's current attempt -----------------------------------------------------------

    def _reconcile_job(self, job_id: str) -> float | None:
        active = ledger.active_attempt(self.db, job_id)
        if active is None:  # ended (or never admitted): nothing to do
            self._forget(job_id)
            return None
        plan = self.plan(active)
        backend = self.backend(active.backend)
        poll = backend.poll(plan, active.ref)
        if poll.state == "launching":
            return self.tail_s
        if poll.state == "not_launched":
            if active.state == "Running":
                lost = AttemptExit("lost", message="the attempt's working folder disappeared")
                self._finalize(active, Poll("exited", active.ref, lost))
                return None
            if active.stop_requested:
                stopped = AttemptExit("stopped", message="stopped before it started")
                state = ledger.finish_attempt(self.db, active.attempt_id, stopped, None)
                self._ended(active, state)
                return None
            self._launch(active)
            return 0.0  # look at it again at once: tail it, or see that the launch failed
        if poll.state == "running":
            if active.state == "Starting" or not active.ref:
                ledger.record_launch(self.db, active.attempt_id, poll.ref)
                job_changed()
            self._tail(active, backend, plan, poll.ref, active.offsets, final=False)
            if active.stop_requested and active.attempt_id not in self._stop_sent:
                backend.stop(plan, poll.ref)
                self._stop_sent.add(active.attempt_id)
            self._watch_attempt(job_id, backend, plan, poll.ref)
            return self.tail_s
        self._finalize(active, poll)
        return None

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
        self._ended(active, ledger.finish_attempt(self.db, active.attempt_id, exit, None))

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
        self._ended(active, ledger.finish_attempt(self.db, active.attempt_id, exit, collected))
        try:
            backend.cleanup(plan, ref)
        except Exception:
            log.exception("cleaning up attempt %s of job %s", active.number, active.job_id)

    def _ended(self, active: ActiveAttempt, state: str | None) -> None:
        """After an attempt's end was recorded (``state``: the job's new state)."""
        job_changed()
        self._stop_sent.discard(active.attempt_id)
        with self._guard:
            self._watched.pop(active.job_id, None)
        if state in TERMINAL_STATES:
            self._extractors.pop(active.job_id, None)
        self.enqueue(ADMIT)  # its capacity is free; or the job waits for its retry

    def _forget(self, job_id: str) -> None:
        with self._guard:
            self._watched.pop(job_id, None)
        self._extractors.pop(job_id, None)

    # -- the exit watch -------------------------------------------------------------------------

    def _watch_attempt(
        self, job_id: str, backend: ComputeBackend, plan: AttemptPlan, ref: BackendRef
    ) -> None:
        with self._guard:
            fresh = job_id not in self._watched
            self._watched[job_id] = (backend, plan, ref)
        if fresh:
            self.enqueue(WATCH)

    def _watch(self) -> float | None:
        """Watch for up to ``watch_round_s``: a round of polls every interval, in this call
        (a kit re-check per round would cost more than the polls themselves).

        Seconds until the next round while anything is watched, else None (a job seen
        running queues the watch again). Returns early once this controller is no longer
        active (stopping, or its lease lost).
        """
        until = time.monotonic() + self.watch_round_s
        while True:
            interval = self._watch_round()
            if interval is None or not self.active or time.monotonic() + interval >= until:
                return interval
            time.sleep(interval)

    def _watch_round(self) -> float | None:
        """Poll each watched attempt once; queue the jobs of those that ended.

        Seconds until the next round while anything is watched, else None.
        """
        with self._guard:
            watched = list(self._watched.items())
        ended: list[str] = []
        for job_id, (backend, plan, ref) in watched:
            started = time.perf_counter()
            try:
                state = backend.poll(plan, ref).state
            except Exception:  # the job's own reconcile polls it again and reports the error
                state = "running"
            finally:
                cost = time.perf_counter() - started
                previous = self._poll_cost.get(backend.url, cost)
                self._poll_cost[backend.url] = 0.8 * previous + 0.2 * cost
            if state != "running":
                ended.append(job_id)
        with self._guard:
            for job_id in ended:
                self._watched.pop(job_id, None)
            left = [backend for backend, _, _ in self._watched.values()]
        if ended:
            self.enqueue(*ended)
        if not left:
            return None
        round_cost = sum(self._poll_cost.get(backend.url, 0.0) for backend in left)
        return max(self.watch_s, round_cost / self.watch_share)

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


def make_controller(runtime: ControlPlane) -> JobsController:
    """The background service the jobs domain declares (started by ``modelyard up``)."""
    return JobsController.for_runtime(runtime)
