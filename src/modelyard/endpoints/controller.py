"""The endpoints controller: makes running replicas match the ``endpoints`` table.

Each pass (every 0.25 s, and at once after an operation commits a change):

1. **Replicas.** For every variant of every endpoint the controller keeps ``replicas``
   rows; a missing one is added (``Pending``), a surplus one drained. A ``Pending``
   replica is launched (model artifact extracted once into a cache, a model server
   started under the jobs supervisor on a free loopback port; with placement ``ray``, a
   Ray actor starting it on its node: :mod:`modelyard.endpoints.ray_replicas`); a
   ``Starting`` one becomes ``Ready`` when ``/ping`` answers 200; a ``Ready`` one whose
   process (or actor) died is restarted (``restarts`` counts it); one that fails
   ``MAX_FAILURES`` times in a row before becoming ready is ``Failed``. A replica
   leaving service is ``Draining``: the router stops choosing it at once, and it is
   stopped (gracefully: in-flight requests finish) once no request of this process is in
   flight to it and ``drain_s`` passed.
2. **Rollouts.** An ``InProgress`` rollout waits for its new replicas, then shifts the
   traffic weights step by step, evaluating its alarms against the router's counters of
   the new variants during each bake; an alarm sends all traffic back to the old
   variants at once and records the rollout as ``RolledBack`` with the reason.
3. **Autoscaling.** A variant with ``autoscaling`` gets a new desired ``replicas``
   count from :mod:`modelyard.endpoints.autoscaling` (in-flight requests per replica,
   scale to zero when idle) while the endpoint is ``InService``; each change is a
   ``scaled`` event and the variant's ``last_scaling``, and step 1 then adds or drains
   replicas. A cold start the router saw is recorded as a ``cold_start`` event and the
   variant's ``last_cold_start_ms``.
4. **Status.** ``Creating`` becomes ``InService`` once every replica is ready;
   ``Failed`` when a variant that takes traffic has only failed replicas; ``Deleting``
   stops every replica and then removes the endpoint.

Nothing lives only in memory. After a restart the controller finds each replica again
by its supervisor's pid and start time, or a Ray replica by its actor's name (re-attaching
it, or restarting it if it died),
and resumes a rollout at its current step with a fresh bake (the router's counters
start again at zero). One controller runs per ``MODELYARD_HOME`` (a file lock); it names
itself in ``controller.json`` beside the lock, the file its replicas watch. A controller
that stops stops its local replicas (:meth:`EndpointController._stop_local_replicas`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, Protocol

import psutil
from sqlalchemy import delete, event, func, select
from sqlalchemy.orm import Session

from modelyard.config import Settings
from modelyard.core.artifacts import ArtifactStore
from modelyard.core.db import Database, utcnow
from modelyard.core.events import write_events
from modelyard.core.ids import new_id
from modelyard.core.procs import start_ticks
from modelyard.endpoints import rollouts
from modelyard.endpoints.autoscaling import Autoscaler
from modelyard.endpoints.direct import Authorize, DirectServers
from modelyard.endpoints.invoke import INVOKE
from modelyard.endpoints.plane import close_plane, plane_for
from modelyard.endpoints.processes import STOP_GRACE_S, ModelCache, Replicas, root
from modelyard.endpoints.ray_replicas import RayReplicas
from modelyard.endpoints.replica_auth import ReplicaKeys
from modelyard.endpoints.router import (
    Counters,
    held,
    inflight_of,
    invalidate_routers,
    last_request,
    stats_of,
    take_cold_starts,
)
from modelyard.endpoints.schemas import Autoscaling, Strategy
from modelyard.endpoints.store import (
    EndpointEventRow,
    EndpointRow,
    MetricRow,
    ReplicaRow,
    RolloutRow,
)
from modelyard.jobs.supervisor import write_json_atomic

log = logging.getLogger("modelyard.endpoints")

MAX_FAILURES = 3
OWNER_FILE = "controller.json"
ACTOR = "endpoints-controller"
LIVE = ("Pending", "Starting", "Ready", "Failed")

_controllers: weakref.WeakSet[EndpointController] = weakref.WeakSet()


def notify() -> None:
    """Wake every controller in this process and drop its routers' cached tables."""
    invalidate_routers()
    for controller in list(_controllers):
        controller.wake()


def notify_after_commit(session: Session) -> None:
    event.listen(session, "after_commit", lambda _s: notify(), once=True)


def record_event(session: Session, endpoint: str, kind: str, message: str, **detail: Any) -> None:
    """One row of the endpoint's history plus an outbox event, in ``session``."""
    session.add(EndpointEventRow(endpoint=endpoint, kind=kind, message=message, detail=detail))
    write_events(session, ACTOR, [(f"endpoint.{kind}", {"endpoint": endpoint, **detail})])


class ControlPlane(Protocol):
    db: Database
    artifacts: ArtifactStore
    settings: Settings


@dataclass
class _Baseline:
    step: int
    counters: Counters


def _authorizer(runtime: Any) -> Authorize | None:
    """Check a bearer token against ``endpoints.invoke`` with the runtime's rules; a
    refused token is audited (rate-limited per client address) as on every other route."""
    authenticate = getattr(runtime, "authenticate", None)
    authorize = getattr(runtime, "authorize", None)
    if authenticate is None or authorize is None:
        return None

    def check(token: str | None, request_id: str, source: str) -> None:
        principal = authenticate(token, origin=source, request_id=request_id, operation=INVOKE.name)
        authorize(INVOKE, principal, origin="endpoint", request_id=request_id)

    return check


def _seconds_since(when: dt.datetime) -> float:
    return (utcnow() - when).total_seconds()


class EndpointController:
    """Reconciles endpoints with their replica processes; :meth:`start` runs it in a thread."""

    def __init__(
        self, runtime: ControlPlane, *, poll_s: float = 0.25, drain_s: float = 2.0
    ) -> None:
        self.runtime = runtime
        self.db = runtime.db
        self.settings = runtime.settings
        self.plane = plane_for(runtime)
        self.processes = Replicas(self.settings.home)
        self.keys = ReplicaKeys(self.settings.home)
        self.owner_file = root(self.settings.home) / OWNER_FILE
        self._ray: dict[str, RayReplicas] = {}
        self.cache = ModelCache(self.settings.home, runtime.artifacts)
        self.direct = DirectServers(self.plane.router, _authorizer(runtime))
        self.poll_s = poll_s
        self.drain_s = drain_s
        self._guard = threading.Lock()
        self._busy: set[str] = set()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock_file: IO[bytes] | None = None
        self._baselines: dict[str, _Baseline] = {}
        self.autoscaler = Autoscaler()

    # -- lifecycle -------------------------------------------------------------------------

    def _acquire(self) -> bool:
        folder = root(self.settings.home)
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / "controller.lock", "wb")  # noqa: SIM115 (held while running)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        # Replicas watch this file: they stop themselves once the process named in it has
        # been gone for settings.replica_orphan_grace_s (a controller killed with -9);
        # a controller started in time takes them over by rewriting it.
        me = psutil.Process()
        owner = {"pid": me.pid, "started": me.create_time(), "start_ticks": start_ticks(me.pid)}
        write_json_atomic(self.owner_file, owner)
        return True

    def start(self) -> bool:
        """Start the loop; False if another controller owns this home."""
        if self._thread is not None:
            return True
        if not self._acquire():
            log.info("another endpoints controller runs on this home; leaving it the endpoints")
            return False
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="modelyard-endpoints")
        self._thread = threading.Thread(target=self._loop, name="modelyard-endpoints", daemon=True)
        _controllers.add(self)
        self._thread.start()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop and this home's local replica processes (see
        :meth:`_stop_local_replicas`); Ray replicas keep running and the next controller
        re-attaches them."""
        _controllers.discard(self)
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._lock_file is not None:
            try:
                self._stop_local_replicas()
            except Exception:
                log.exception("stopping the replicas of %s", self.settings.home)
            self._lock_file.close()
            self._lock_file = None
        self.direct.close()
        self.processes.close()
        close_plane(self.runtime)

    def wake(self) -> None:
        self._wake.set()

    def _stop_local_replicas(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every local replica process of this home: gracefully (in-flight requests
        finish), killed after ``grace_s``. Their ``Starting``/``Ready`` rows go back to
        ``Pending``, so the next controller starts them again (not counted as restarts)."""
        with self.db.transaction(write=False) as session:
            rows = [
                r
                for r in session.scalars(select(ReplicaRow))
                if r.placement == "local" and r.supervisor_pid is not None
            ]

        def running() -> list[ReplicaRow]:
            return [r for r in rows if self.processes.alive(r.supervisor_pid, r.supervisor_started)]

        for r in running():
            self.processes.stop(r.id, r.attempt, r.supervisor_pid, r.supervisor_started)
        deadline = time.monotonic() + grace_s
        while running() and time.monotonic() < deadline:
            time.sleep(0.05)
        for r in running():
            self.processes.kill(r.id, r.attempt, r.supervisor_pid, r.supervisor_started)
        with self.db.transaction() as session:
            for r in rows:
                row = session.get(ReplicaRow, r.id)
                if row is not None and row.state in ("Starting", "Ready"):
                    row.state, row.message = "Pending", "stopped with the control plane"
                    row.pid = row.port = None
                    row.state_since = row.updated_at = utcnow()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("endpoints controller pass failed; retrying")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # -- one pass --------------------------------------------------------------------------

    def run_once(self) -> None:
        with self.db.transaction(write=False) as session:
            endpoints = list(session.scalars(select(EndpointRow)))
            replicas = list(session.scalars(select(ReplicaRow)))
            active = {
                r.endpoint_id: r
                for r in session.scalars(select(RolloutRow).where(RolloutRow.state == "InProgress"))
            }
        by_endpoint: dict[str, list[ReplicaRow]] = {}
        for r in replicas:
            by_endpoint.setdefault(r.endpoint_id, []).append(r)
        changed = self._record_cold_starts(take_cold_starts())
        self.autoscaler.forget({v["id"] for ep in endpoints for v in ep.variants})
        for ep in endpoints:
            try:
                changed |= self._reconcile(ep, by_endpoint.get(ep.id, []), active.get(ep.id))
                self._serve(ep)
            except Exception:
                log.exception("reconciling endpoint %s", ep.name)
        names = {ep.name for ep in endpoints if ep.status != "Deleting"}
        for name in self.direct.names():
            if name not in names:
                self.direct.stop(name)
        if changed:
            self.plane.router.invalidate()

    def _reconcile(
        self, ep: EndpointRow, replicas: list[ReplicaRow], rollout: RolloutRow | None
    ) -> bool:
        changed = False
        if ep.status == "Deleting":
            return self._delete(ep, replicas)
        if rollout is None and self._autoscale(ep, replicas):
            return True  # the next pass starts or drains replicas from the new counts
        changed |= self._scale(ep, replicas)
        for r in replicas:
            changed |= self._step_replica(ep, r)
        if rollout is not None:
            changed |= self._advance(ep, rollout)
        changed |= self._update_status(ep)
        return changed

    def _serve(self, ep: EndpointRow) -> None:
        """Serve the endpoint on its own port (kept in its row; reused after a restart)."""
        if ep.status == "Deleting":
            return
        port = self.direct.ensure(ep.name, ep.port)
        if port is not None and port != ep.port:
            with self.db.transaction() as session:
                row = session.get(EndpointRow, ep.id)
                if row is not None:
                    row.port = port

    # -- autoscaling -----------------------------------------------------------------------

    def _autoscale(self, ep: EndpointRow, replicas: list[ReplicaRow]) -> bool:
        """Write the autoscaler's new replica counts for ``ep``'s variants; True if any."""
        if ep.status != "InService":
            return False
        now = time.monotonic()
        decisions = {}
        for v in ep.variants:
            if not v.get("autoscaling"):
                continue
            spec = Autoscaling.model_validate(v["autoscaling"])
            mine = [r for r in replicas if r.variant_id == v["id"]]
            demand = inflight_of(r.id for r in mine) + (0 if v["shadow"] else held(ep.name))
            starting = any(r.state in ("Pending", "Starting") for r in mine)
            decision = self.autoscaler.decide(
                v["id"], spec, int(v["replicas"]), demand, last_request(v["id"]), now, starting
            )
            if decision is not None:
                decisions[v["id"]] = decision
        if not decisions:
            return False
        with self.db.transaction() as session:
            row = session.get(EndpointRow, ep.id, with_for_update=True)
            if row is None or row.status != "InService" or row.generation != ep.generation:
                return False  # changed meanwhile: decide again on the next pass
            variants = [dict(v) for v in row.variants]
            for v in variants:
                decision = decisions.get(v["id"])
                if decision is None:
                    continue
                before = int(v["replicas"])
                v["replicas"] = decision.replicas
                v["last_scaling"] = decision.reason
                v["last_scaling_at"] = utcnow().isoformat()
                record_event(
                    session,
                    ep.name,
                    "scaled",
                    f"variant {v['name']}: {decision.reason}",
                    variant=v["name"],
                    before=before,
                    after=decision.replicas,
                    in_flight_mean=round(decision.in_flight_mean, 3),
                )
            row.variants = variants
            row.generation += 1
            row.updated_at = utcnow()
        for vid in decisions:
            self.autoscaler.changed(vid, now)
        self.plane.router.invalidate(ep.name)
        return True

    def _record_cold_starts(self, cold: dict[str, float]) -> bool:
        """Store cold-start times the routers saw (variant id -> ms) on their variants."""
        if not cold:
            return False
        with self.db.transaction() as session:
            for row in session.scalars(select(EndpointRow).with_for_update()):
                if not any(v["id"] in cold for v in row.variants):
                    continue
                variants = [dict(v) for v in row.variants]
                for v in variants:
                    if v["id"] in cold:
                        v["last_cold_start_ms"] = cold[v["id"]]
                        record_event(
                            session,
                            row.name,
                            "cold_start",
                            f"variant {v['name']}: a request waited {cold[v['id']]:g} ms for a "
                            "replica to start",
                            variant=v["name"],
                            cold_start_ms=cold[v["id"]],
                        )
                row.variants = variants
                row.updated_at = utcnow()
        return True

    # -- replicas --------------------------------------------------------------------------

    def _scale(self, ep: EndpointRow, replicas: list[ReplicaRow]) -> bool:
        """Add or drain replica rows so each variant has its ``replicas`` count."""
        wanted = {v["id"]: int(v["replicas"]) for v in ep.variants}
        live: dict[str, list[ReplicaRow]] = {}
        for r in replicas:
            if r.state in LIVE:
                live.setdefault(r.variant_id, []).append(r)
        add: list[str] = []
        drain: list[str] = []
        for vid, count in wanted.items():
            have = live.get(vid, [])
            add.extend([vid] * (count - len(have)))
            if len(have) > count:
                order = {"Failed": 0, "Pending": 1, "Starting": 2, "Ready": 3}
                surplus = sorted(have, key=lambda r: order[r.state])[: len(have) - count]
                drain.extend(r.id for r in surplus)
        for vid, rows in live.items():
            if vid not in wanted:
                drain.extend(r.id for r in rows)
        if not add and not drain:
            return False
        with self.db.transaction() as session:
            for vid in add:
                session.add(
                    ReplicaRow(
                        id=new_id("rep"),
                        endpoint_id=ep.id,
                        variant_id=vid,
                        state="Pending",
                        placement=_placement(self._variant(ep, vid))[0],
                    )
                )
            for rid in drain:
                row = session.get(ReplicaRow, rid)
                if row is not None and row.state in LIVE:
                    row.state = "Draining"
                    row.state_since = row.updated_at = utcnow()
        return True

    def _set(self, rid: str, expect: str, **values: Any) -> ReplicaRow | None:
        """Change a replica row if it is still in state ``expect``; the row, or None."""
        with self.db.transaction() as session:
            row = session.get(ReplicaRow, rid)
            if row is None or row.state != expect:
                return None
            if "state" in values and values["state"] != row.state:
                row.state_since = utcnow()
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            return row

    def _variant(self, ep: EndpointRow, vid: str) -> dict[str, Any] | None:
        return next((v for v in ep.variants if v["id"] == vid), None)

    def _step_replica(self, ep: EndpointRow, r: ReplicaRow) -> bool:
        if r.state == "Pending":
            backoff = min(2.0**r.failures, 10.0) if r.failures else 0.0
            if _seconds_since(r.state_since) >= backoff:
                variant = self._variant(ep, r.variant_id)
                if variant is not None:
                    self._submit(r.id, self._launch, r, variant)
            return False
        alive = self._alive(r)
        if r.state == "Starting":
            if not alive:
                return self._failed_start(ep, r, self._exit_message(r))
            probe, why = self.processes.probe(r.port, r.host, self.keys.secret(r.id, r.attempt))
            if probe == "failed":
                self._kill(r)
                return self._failed_start(ep, r, why)
            if probe == "ready":
                local = r.placement == "local"
                pid = self.processes.server_pid(r.id, r.attempt) if local else r.pid
                # ``message`` keeps the last problem (e.g. why it was restarted).
                return self._set(r.id, "Starting", state="Ready", pid=pid, failures=0) is not None
            if _seconds_since(r.state_since) > 300:
                self._kill(r)
                return self._failed_start(ep, r, "the model server did not answer /ping in 300 s")
            return False
        if r.state == "Ready":
            if alive:
                return False
            message = self._exit_message(r)
            if self._set(r.id, "Ready", state="Pending", restarts=r.restarts + 1, message=message):
                with self.db.transaction() as session:
                    record_event(
                        session,
                        ep.name,
                        "replica_restarted",
                        message,
                        replica=r.id,
                        variant=r.variant_id,
                    )
                return True
            return False
        if r.state == "Draining":
            idle = self.plane.router.inflight([r.id]) == 0
            waited = _seconds_since(r.state_since)
            if not alive or (waited >= self.drain_s and idle) or waited > 60:
                self._stop_replica(r)
                return self._set(r.id, "Draining", state="Stopping") is not None
            return False
        if r.state == "Stopping":
            if not alive:
                with self.db.transaction() as session:
                    session.execute(delete(ReplicaRow).where(ReplicaRow.id == r.id))
                if r.placement == "local":
                    self.processes.remove(r.id)
                else:
                    self._kill(r)  # the actor outlives its stopped server
                return True
            if _seconds_since(r.state_since) > STOP_GRACE_S + 10:
                self._kill(r)
            return False
        return False

    def _failed_start(self, ep: EndpointRow, r: ReplicaRow, message: str) -> bool:
        failures = r.failures + 1
        state = "Failed" if failures >= MAX_FAILURES else "Pending"
        if self._set(r.id, r.state, state=state, failures=failures, message=message) is None:
            return False
        if r.placement != "local":
            self._kill(r)  # its actor would hold its CPUs
        if state == "Failed":
            with self.db.transaction() as session:
                record_event(
                    session, ep.name, "replica_failed", message, replica=r.id, variant=r.variant_id
                )
        return True

    def _submit(self, key: str, fn: Any, *args: Any) -> None:
        with self._guard:
            if key in self._busy or self._pool is None:
                return
            self._busy.add(key)

        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("endpoints controller task %s", key)
            finally:
                with self._guard:
                    self._busy.discard(key)
                self._wake.set()

        self._pool.submit(run)

    def _launch(self, r: ReplicaRow, variant: dict[str, Any]) -> None:
        attempt = r.attempt + 1
        # The loop may have read this row as Pending just before an earlier launch of it
        # committed Starting: launching again would rewrite that attempt's launch.json
        # (a new port) under the running supervisor. Launch only a row still Pending.
        with self.db.transaction() as session:
            current = session.get(ReplicaRow, r.id)
            if current is None or current.state != "Pending" or current.attempt != r.attempt:
                return
        if r.placement != "local":
            self._launch_on_ray(r, attempt, variant)
            return
        try:
            model_dir = self.cache.path(variant["artifact_digest"], variant["artifact_filename"])
            launched = self.processes.launch(
                r.id,
                attempt,
                model_dir,
                variant["model"],
                int(variant["version"]),
                secret=self.keys.secret(r.id, attempt),
                owner_file=self.owner_file,
                orphan_grace_s=self.settings.replica_orphan_grace_s,
            )
        except Exception as exc:
            log.exception("launching replica %s", r.id)
            self._launch_failed(r, attempt, exc)
            return
        stored = self._set(
            r.id,
            "Pending",
            state="Starting",
            attempt=attempt,
            port=launched.port,
            supervisor_pid=launched.supervisor_pid,
            supervisor_started=launched.supervisor_started,
            pid=None,
        )
        if stored is None:  # deleted or drained meanwhile
            self.processes.kill(r.id, attempt, launched.supervisor_pid, launched.supervisor_started)

    def _launch_failed(self, r: ReplicaRow, attempt: int, exc: Exception) -> None:
        failures = r.failures + 1
        self._set(
            r.id,
            "Pending",
            state="Failed" if failures >= MAX_FAILURES else "Pending",
            failures=failures,
            attempt=attempt,
            message=f"could not start the replica: {exc}",
        )

    def _launch_on_ray(self, r: ReplicaRow, attempt: int, variant: dict[str, Any]) -> None:
        """Start the attempt as a Ray actor; the row gets the node's host and port."""
        _, num_cpus = _placement(variant)
        ray_replicas = self._ray_replicas(r.placement)
        try:
            info = ray_replicas.launch(r.id, attempt, variant, num_cpus)
        except Exception as exc:
            log.warning("launching replica %s on Ray: %s", r.id, exc)
            self._launch_failed(r, attempt, exc)
            return
        stored = self._set(
            r.id,
            "Pending",
            state="Starting",
            attempt=attempt,
            host=str(info["host"]),
            port=int(info["port"]),
            supervisor_pid=None,
            supervisor_started=None,
            pid=int(info["pid"]),
        )
        if stored is None:  # deleted or drained meanwhile
            ray_replicas.kill(r.id, attempt)

    # -- where a replica runs --------------------------------------------------------------

    def _ray_replicas(self, url: str) -> RayReplicas:
        with self._guard:
            found = self._ray.get(url)
            if found is None:
                found = self._ray[url] = RayReplicas(
                    url, self.runtime.artifacts, self.settings.home
                )
            return found

    def _alive(self, r: ReplicaRow) -> bool:
        if r.placement == "local":
            return self.processes.alive(r.supervisor_pid, r.supervisor_started)
        return self._ray_replicas(r.placement).alive(r.id, r.attempt)

    def _exit_message(self, r: ReplicaRow) -> str:
        if r.placement == "local":
            return self.processes.exit_message(r.id, r.attempt)
        return self._ray_replicas(r.placement).exit_message(r.id, r.attempt)

    def _stop_replica(self, r: ReplicaRow) -> None:
        if r.placement == "local":
            self.processes.stop(r.id, r.attempt, r.supervisor_pid, r.supervisor_started)
        elif r.attempt > 0:
            self._ray_replicas(r.placement).stop(r.id, r.attempt)

    def _kill(self, r: ReplicaRow) -> None:
        if r.placement == "local":
            self.processes.kill(r.id, r.attempt, r.supervisor_pid, r.supervisor_started)
        elif r.attempt > 0:
            self._ray_replicas(r.placement).kill(r.id, r.attempt)

    # -- deletion and status ---------------------------------------------------------------

    def _delete(self, ep: EndpointRow, replicas: list[ReplicaRow]) -> bool:
        changed = False
        for r in replicas:
            if r.state == "Stopping":
                changed |= self._step_replica(ep, r)
            elif r.state != "Stopping":
                self._stop_replica(r)
                changed |= self._set(r.id, r.state, state="Stopping") is not None
        if replicas:
            return changed
        with self.db.transaction() as session:
            row = session.get(EndpointRow, ep.id)
            if row is not None and row.status == "Deleting":
                session.delete(row)
                record_event(session, ep.name, "deleted", "every replica stopped; endpoint removed")
        return True

    def _update_status(self, ep: EndpointRow) -> bool:
        with self.db.transaction() as session:
            row = session.get(EndpointRow, ep.id)
            if row is None or row.status in ("Deleting", "Updating"):
                return False
            reps = list(session.scalars(select(ReplicaRow).where(ReplicaRow.endpoint_id == ep.id)))
            serving = [v for v in row.variants if row.traffic.get(v["id"], 0) > 0]
            failed = [
                v
                for v in serving
                if (mine := [r for r in reps if r.variant_id == v["id"] and r.state in LIVE])
                and all(r.state == "Failed" for r in mine)
            ]
            wanted = sum(int(v["replicas"]) for v in row.variants)
            ready = sum(1 for r in reps if r.state == "Ready")
            status, message = row.status, row.message
            if failed:
                names = ", ".join(v["name"] for v in failed)
                why = next(
                    (r.message for r in reps if r.variant_id == failed[0]["id"] and r.message), ""
                )
                status, message = "Failed", f"variant(s) {names} could not start: {why}"
            elif ready >= wanted and row.status in ("Creating", "Failed"):
                status, message = "InService", ""
            if (status, message) == (row.status, row.message):
                return False
            row.status, row.message, row.updated_at = status, message, utcnow()
            record_event(session, ep.name, "status", message or status, status=status)
            return True

    # -- rollouts --------------------------------------------------------------------------

    def _advance(self, ep: EndpointRow, ro: RolloutRow) -> bool:
        strategy = Strategy.model_validate(ro.strategy)
        new_ids = list(ro.new_variant_ids)
        names = ", ".join(v["name"] for v in ro.to_variants if v["id"] in new_ids) or "new variants"
        if ro.phase == "starting":
            with self.db.transaction(write=False) as session:
                reps = [
                    r
                    for r in session.scalars(
                        select(ReplicaRow).where(ReplicaRow.endpoint_id == ep.id)
                    )
                    if r.variant_id in new_ids
                ]
            wanted = sum(int(v["replicas"]) for v in ro.to_variants if v["id"] in new_ids)
            failed = [r for r in reps if r.state == "Failed"]
            if failed:
                return self._rollback(
                    ep, ro, f"new variant(s) {names} could not start: {failed[0].message}"
                )
            if _seconds_since(ro.phase_started_at) > strategy.ready_timeout_seconds:
                return self._rollback(
                    ep,
                    ro,
                    f"new variant(s) {names} not ready within {strategy.ready_timeout_seconds:g} s",
                )
            if sum(1 for r in reps if r.state == "Ready") < wanted:
                return False
            return self._go_to_step(ep, ro, 0)
        # baking
        baseline = self._baselines.get(ro.id)
        if baseline is None or baseline.step != ro.step:
            # A restarted controller: the counters are new, so the bake starts again.
            self._baselines[ro.id] = _Baseline(ro.step, self._counters(new_ids))
            with self.db.transaction() as session:
                row = session.get(RolloutRow, ro.id)
                if row is not None and row.state == "InProgress":
                    row.phase_started_at = row.updated_at = utcnow()
            return False
        seen = self._counters(new_ids).minus(baseline.counters)
        for alarm in strategy.alarms:
            custom = None
            if alarm.metric == "custom":
                with self.db.transaction(write=False) as session:
                    custom = session.scalar(
                        select(func.max(MetricRow.value)).where(
                            MetricRow.endpoint == ep.name,
                            MetricRow.metric == alarm.name,
                            MetricRow.time >= ro.phase_started_at,
                        )
                    )
            reason = rollouts.evaluate(alarm, seen, custom, names)
            if reason is not None:
                return self._rollback(ep, ro, reason, fired=alarm.model_dump(mode="json"))
        if _seconds_since(ro.phase_started_at) < strategy.bake():
            return False
        if ro.step + 1 < len(ro.steps):
            return self._go_to_step(ep, ro, ro.step + 1)
        return self._complete(ep, ro)

    def _counters(self, variant_ids: list[str]) -> Counters:
        total = Counters()
        for c in stats_of(variant_ids).values():
            total.add(c)
        return total

    def _go_to_step(self, ep: EndpointRow, ro: RolloutRow, step: int) -> bool:
        traffic = rollouts.mix(
            rollouts.normalised(ro.from_variants),
            rollouts.normalised(ro.to_variants),
            ro.steps[step],
        )
        with self.db.transaction() as session:
            row = session.get(RolloutRow, ro.id)
            endpoint = session.get(EndpointRow, ep.id)
            if row is None or endpoint is None or row.state != "InProgress":
                return False
            row.step, row.phase = step, "baking"
            row.phase_started_at = row.updated_at = utcnow()
            endpoint.traffic = traffic
            endpoint.generation += 1
            endpoint.updated_at = utcnow()
            record_event(
                session,
                ep.name,
                "traffic_shifted",
                f"step {step + 1} of {len(ro.steps)}: {ro.steps[step]:.0%} to the new variants",
                rollout=ro.id,
                traffic=traffic,
            )
        self._baselines[ro.id] = _Baseline(step, self._counters(list(ro.new_variant_ids)))
        self.plane.router.invalidate(ep.name)
        return True

    def _complete(self, ep: EndpointRow, ro: RolloutRow) -> bool:
        with self.db.transaction() as session:
            row = session.get(RolloutRow, ro.id)
            endpoint = session.get(EndpointRow, ep.id)
            if row is None or endpoint is None or row.state != "InProgress":
                return False
            row.state, row.phase = "Completed", "done"
            row.finished_at = row.updated_at = utcnow()
            endpoint.variants = list(ro.to_variants)
            endpoint.traffic = rollouts.normalised(ro.to_variants)
            endpoint.status, endpoint.message = "InService", ""
            endpoint.generation += 1
            endpoint.updated_at = utcnow()
            record_event(session, ep.name, "rollout_completed", "rollout completed", rollout=ro.id)
        self._baselines.pop(ro.id, None)
        self.plane.router.invalidate(ep.name)
        return True

    def _rollback(
        self, ep: EndpointRow, ro: RolloutRow, reason: str, *, fired: dict[str, Any] | None = None
    ) -> bool:
        with self.db.transaction() as session:
            row = session.get(RolloutRow, ro.id)
            endpoint = session.get(EndpointRow, ep.id)
            if row is None or endpoint is None or row.state != "InProgress":
                return False
            row.state, row.phase, row.reason = "RolledBack", "done", reason
            row.finished_at = row.updated_at = utcnow()
            endpoint.variants = list(ro.from_variants)
            endpoint.traffic = rollouts.normalised(ro.from_variants)
            endpoint.status, endpoint.message = (
                "InService",
                f"rollout {ro.id} rolled back: {reason}",
            )
            endpoint.generation += 1
            endpoint.updated_at = utcnow()
            record_event(
                session, ep.name, "rollout_rolled_back", reason, rollout=ro.id, alarm=fired or {}
            )
        self._baselines.pop(ro.id, None)
        self.plane.router.invalidate(ep.name)
        log.warning("endpoint %s: rollout %s rolled back: %s", ep.name, ro.id, reason)
        return True


def _placement(variant: dict[str, Any] | None) -> tuple[str, float]:
    """A variant's placement backend URL and CPUs per replica (local, 1 by default)."""
    placement = (variant or {}).get("placement") or {}
    return str(placement.get("backend", "local")), float(placement.get("num_cpus", 1.0))


def make_controller(runtime: ControlPlane) -> EndpointController:
    """The background service the endpoints domain declares."""
    return EndpointController(runtime)
