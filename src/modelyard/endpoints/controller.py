"""The endpoints controller: makes running replicas match the ``endpoints`` table.

A controller on the kit (:mod:`modelyard.core.controllers`). Its keys are endpoint names:
the service's ``endpoint.*`` outbox events (from any process on the database) and
:func:`notify_after_commit` queue one, a resync (at start, on taking over, every
``resync_s``) queues them all, and each reconcile asks to look again after ``poll_s``
(0.25 s) while the endpoint exists. Reconciling an endpoint runs, in order:

1. **Autoscaling** (:class:`~modelyard.endpoints.autoscaling.AutoscalingReconciler`): the
   cold starts the routers saw, and new desired ``replicas`` counts while the endpoint is
   ``InService`` and no rollout runs.
2. **Replicas** (:class:`ReplicaReconciler`): for every variant it keeps ``replicas`` rows;
   a missing one is added (``Pending``), a surplus one drained. A ``Pending`` replica is
   launched by its placement (:mod:`modelyard.endpoints.placement`: a model server under
   the supervisor on this host, or a Ray actor) as a key of its own (``launch:<id>``), so
   a slow launch holds up nothing else; a ``Starting`` one becomes ``Ready`` when
   ``/ping`` answers 200; a ``Ready`` one whose process died is restarted (``restarts``
   counts it); one that fails ``MAX_FAILURES`` times in a row before becoming ready is
   ``Failed``. A replica leaving service is ``Draining``: the router stops choosing it at
   once, and it is stopped (gracefully: in-flight requests finish) once no request of this
   process is in flight to it and ``drain_s`` passed. Moves follow
   :data:`~modelyard.endpoints.states.REPLICA`; each is an ``endpoint.replica_state`` event.
3. **Rollouts** (:class:`~modelyard.endpoints.rollouts.RolloutReconciler`).
4. **Status.** ``Creating`` becomes ``InService`` once every replica is ready;
   ``Failed`` when a variant that takes traffic has only failed replicas; ``Deleting``
   stops every replica and then removes the endpoint.

Nothing lives only in memory. After a restart the controller adopts each replica again
through its placement (a supervisor by pid and start time, a Ray actor by name), and
resumes a rollout at its current step. One controller runs per database (the kit's lease);
the process holding it names itself in ``controller.json``, the file its local replicas
watch (they stop themselves once that process has been gone for
``replica_orphan_grace_s``). A controller that stops stops its local replicas first.
It acts as ``system:endpoints.controller`` (:mod:`modelyard.endpoints.history`).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Protocol

import psutil
from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from modelyard.compute.supervisor import write_json_atomic
from modelyard.config import Settings
from modelyard.core import controllers
from modelyard.core.artifacts import ArtifactStore
from modelyard.core.controllers import Controller
from modelyard.core.db import Database, utcnow
from modelyard.core.ids import new_id
from modelyard.core.procs import start_ticks
from modelyard.endpoints.autoscaling import AutoscalingReconciler
from modelyard.endpoints.direct import Authorize, DirectServers
from modelyard.endpoints.history import CONTROLLER, controller_event, replica_moved
from modelyard.endpoints.invoke import INVOKE
from modelyard.endpoints.placement import PlacementContext, Placements, Started
from modelyard.endpoints.plane import close_plane, plane_for
from modelyard.endpoints.processes import STOP_GRACE_S, ModelCache, Prober, root
from modelyard.endpoints.replica_auth import ReplicaKeys
from modelyard.endpoints.rollouts import RolloutReconciler
from modelyard.endpoints.router import Router, invalidate_routers
from modelyard.endpoints.states import LIVE, REPLICA, move_endpoint
from modelyard.endpoints.store import EndpointRow, ReplicaRow, RolloutRow

log = logging.getLogger("modelyard.endpoints")

MAX_FAILURES = 3
OWNER_FILE = "controller.json"
LAUNCH = "launch:"  # key prefix of a replica's launch (endpoint names have no ':')

# The service's events that name an endpoint to look at (the controller's own need not).
SERVICE_EVENTS = (
    "endpoint.created",
    "endpoint.updated",
    "endpoint.rollout_started",
    "endpoint.deleting",
    "endpoint.deleted",
)


def _endpoint_of(payload: dict[str, Any]) -> list[str]:
    name = payload.get("endpoint")
    return [name] if isinstance(name, str) else []


def notify_after_commit(session: Session, endpoint: str) -> None:
    """Once ``session`` commits: routers re-read their tables; ``endpoint`` is reconciled."""

    def committed(_s: Session) -> None:
        invalidate_routers()
        controllers.wake(CONTROLLER, endpoint)

    event.listen(session, "after_commit", committed, once=True)


class ControlPlane(Protocol):
    db: Database
    artifacts: ArtifactStore
    settings: Settings


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


def _placement(variant: dict[str, Any] | None) -> str:
    """A variant's placement backend (``local`` by default)."""
    placement = (variant or {}).get("placement") or {}
    return str(placement.get("backend", "local"))


def _variant(ep: EndpointRow, vid: str) -> dict[str, Any] | None:
    return next((v for v in ep.variants if v["id"] == vid), None)


def _launch_due(r: ReplicaRow) -> bool:
    """A ``Pending`` replica that failed waits 2, 4, 8 (at most 10) s before its next try."""
    backoff = min(2.0**r.failures, 10.0) if r.failures else 0.0
    return _seconds_since(r.state_since) >= backoff


class ReplicaReconciler:
    """The replica lifecycle of one endpoint: rows per variant, launch, probe, restart,
    drain, stop (:data:`~modelyard.endpoints.states.REPLICA`)."""

    def __init__(
        self,
        db: Database,
        router: Router,
        placements: Placements,
        secrets: ReplicaKeys,
        *,
        drain_s: float,
        launch: Any,
    ) -> None:
        self.db = db
        self.router = router
        self.placements = placements
        self.secrets = secrets
        self.drain_s = drain_s
        self.prober = Prober()
        self._queue_launch = launch  # queue the replica's launch key
        # The attempt of each replica this controller launched or adopted.
        self._adopted: dict[str, int] = {}
        self._launching: set[str] = set()  # replicas whose launch runs in this process

    def close(self) -> None:
        self.prober.close()

    # -- rows ----------------------------------------------------------------------------

    def set(self, ep: str, rid: str, expect: str, **values: Any) -> ReplicaRow | None:
        """Change a replica row if it is still in state ``expect``; the row, or None. A new
        state must be a move :data:`REPLICA` allows (else it raises, changing nothing)."""
        expect_attempt = values.pop("expect_attempt", None)
        with self.db.transaction() as session:
            row = session.get(ReplicaRow, rid)
            if row is None or row.state != expect:
                return None
            if expect_attempt is not None and row.attempt != expect_attempt:
                return None
            state = values.pop("state", row.state)
            for key, value in values.items():
                setattr(row, key, value)
            if state != row.state:
                REPLICA.advance(row, state, what=f"replica {rid}")
                row.state_since = utcnow()
                replica_moved(session, ep, row, expect)
            row.updated_at = utcnow()
            return row

    def scale(self, ep: EndpointRow, replicas: list[ReplicaRow]) -> bool:
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
                row = ReplicaRow(
                    id=new_id("rep"),
                    endpoint_id=ep.id,
                    variant_id=vid,
                    state="Pending",
                    placement=_placement(_variant(ep, vid)),
                    attempt=0,
                )
                session.add(row)
                replica_moved(session, ep.name, row, "")
            for rid in drain:
                found = session.get(ReplicaRow, rid)
                if found is not None and found.state in LIVE:
                    before = found.state
                    REPLICA.advance(found, "Draining", what=f"replica {rid}")
                    found.state_since = found.updated_at = utcnow()
                    replica_moved(session, ep.name, found, before)
        return True

    # -- one replica ---------------------------------------------------------------------

    def step(self, ep: EndpointRow, r: ReplicaRow) -> bool:
        """Move ``r`` one step; whether the routing changed."""
        if r.state == "Pending":
            if _launch_due(r) and _variant(ep, r.variant_id) is not None:
                self._queue_launch(r.id)
            return False
        if r.state == "Starting" and r.port is None:
            return self._unrecorded(ep, r)
        placement = self.placements.for_row(r)
        if self._adopted.get(r.id) != r.attempt:
            self._adopted[r.id] = r.attempt
            alive = placement.adopt(r)
        else:
            alive = placement.alive(r)
        if r.state == "Starting":
            if not alive:
                return self._failed_start(ep, r, placement.exit_message(r))
            secret = self.secrets.secret(r.id, r.attempt)
            probe, why = self.prober.probe(r.port, r.host, secret)
            if probe == "failed":
                placement.kill(r)
                return self._failed_start(ep, r, why)
            if probe == "ready":
                pid = placement.server_pid(r)
                # ``message`` keeps the last problem (e.g. why it was restarted).
                stored = self.set(ep.name, r.id, "Starting", state="Ready", pid=pid, failures=0)
                return stored is not None
            if _seconds_since(r.state_since) > 300:
                placement.kill(r)
                return self._failed_start(ep, r, "the model server did not answer /ping in 300 s")
            return False
        if r.state == "Ready":
            if alive:
                return False
            message = placement.exit_message(r)
            restarts = r.restarts + 1
            if self.set(
                ep.name, r.id, "Ready", state="Pending", restarts=restarts, message=message
            ):
                with self.db.transaction() as session:
                    controller_event(
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
            idle = self.router.inflight([r.id]) == 0
            waited = _seconds_since(r.state_since)
            if not alive or (waited >= self.drain_s and idle) or waited > 60:
                placement.stop(r)
                return self.set(ep.name, r.id, "Draining", state="Stopping") is not None
            return False
        if r.state == "Stopping":
            if not alive:
                with self.db.transaction() as session:
                    session.execute(delete(ReplicaRow).where(ReplicaRow.id == r.id))
                placement.remove(r)
                self._adopted.pop(r.id, None)
                return True
            if _seconds_since(r.state_since) > STOP_GRACE_S + 10:
                placement.kill(r)
            return False
        return False

    def _failed_start(self, ep: EndpointRow, r: ReplicaRow, message: str) -> bool:
        failures = r.failures + 1
        state = "Failed" if failures >= MAX_FAILURES else "Pending"
        if (
            self.set(ep.name, r.id, r.state, state=state, failures=failures, message=message)
            is None
        ):
            return False
        self.placements.for_row(r).failed(r)
        if state == "Failed":
            with self.db.transaction() as session:
                controller_event(
                    session, ep.name, "replica_failed", message, replica=r.id, variant=r.variant_id
                )
        return True

    def launch(self, rid: str) -> str | None:
        """Launch ``Pending`` replica ``rid``'s next attempt; the endpoint's name, or None."""
        with self.db.transaction(write=False) as session:
            r = session.get(ReplicaRow, rid)
            ep = session.get(EndpointRow, r.endpoint_id) if r is not None else None
        # Launch only a row still Pending and due.
        if r is None or ep is None or r.state != "Pending" or not _launch_due(r):
            return ep.name if ep is not None else None
        variant = _variant(ep, r.variant_id)
        if variant is None:
            return ep.name
        attempt = r.attempt + 1
        # The attempt is recorded before it is launched: a controller that dies in between
        # leaves a Starting row without a port, which the next one stops and counts as a
        # failed start, so no attempt is ever launched twice.
        self._launching.add(r.id)
        try:
            moved = self.set(
                ep.name,
                r.id,
                "Pending",
                state="Starting",
                attempt=attempt,
                port=None,
                supervisor_pid=None,
                supervisor_started=None,
                pid=None,
            )
            if moved is None:  # deleted or drained meanwhile
                return ep.name
            self._launch(ep, r, attempt, variant)
        finally:
            self._launching.discard(r.id)
        return ep.name

    def _launch(
        self, ep: EndpointRow, r: ReplicaRow, attempt: int, variant: dict[str, Any]
    ) -> None:
        placement = self.placements.for_row(r)
        try:
            started = placement.launch(r, attempt, variant)
        except Exception as exc:
            log.warning("launching replica %s (%s): %s", r.id, r.placement, exc, exc_info=True)
            failures = r.failures + 1
            self._set_attempt(
                ep.name,
                r.id,
                attempt,
                state="Failed" if failures >= MAX_FAILURES else "Pending",
                failures=failures,
                message=f"could not start the replica: {exc}",
            )
            return
        stored = self._set_attempt(
            ep.name,
            r.id,
            attempt,
            host=started.host,
            port=started.port,
            supervisor_pid=started.supervisor_pid,
            supervisor_started=started.supervisor_started,
            pid=started.pid,
        )
        if stored is None:  # deleted, drained or given up meanwhile
            placement.kill(_launched(r, attempt, started))
        else:
            self._adopted[r.id] = attempt

    def _set_attempt(self, ep: str, rid: str, attempt: int, **values: Any) -> ReplicaRow | None:
        """:meth:`set` on a row still ``Starting`` its attempt ``attempt``."""
        return self.set(ep, rid, "Starting", expect_attempt=attempt, **values)

    def _unrecorded(self, ep: EndpointRow, r: ReplicaRow) -> bool:
        """A ``Starting`` attempt without a port: launching here, or launched by a
        controller that stopped before recording it (stopped now, a failed start)."""
        if r.id in self._launching:
            return False
        with self.db.transaction(write=False) as session:
            fresh = session.get(ReplicaRow, r.id)
            if fresh is None or fresh.state != "Starting" or fresh.attempt != r.attempt:
                return False
            if fresh.port is not None:
                return False  # recorded since it was read
        self.placements.for_row(r).kill(r)
        return self._failed_start(
            ep, r, "the control plane that launched this attempt stopped before recording it"
        )

    def delete(self, ep: EndpointRow, replicas: list[ReplicaRow]) -> bool:
        """Stop every replica of a ``Deleting`` endpoint, then remove the endpoint."""
        changed = False
        for r in replicas:
            if r.state == "Stopping":
                changed |= self.step(ep, r)
            else:
                self.placements.for_row(r).stop(r)
                changed |= self.set(ep.name, r.id, r.state, state="Stopping") is not None
        if replicas:
            return changed
        with self.db.transaction() as session:
            row = session.get(EndpointRow, ep.id)
            if row is not None and row.status == "Deleting":
                session.delete(row)
                controller_event(
                    session, ep.name, "deleted", "every replica stopped; endpoint removed"
                )
        return True


def _launched(r: ReplicaRow, attempt: int, started: Started) -> ReplicaRow:
    """A detached copy of ``r`` as its launched attempt ``attempt`` (to stop it again)."""
    return ReplicaRow(
        id=r.id,
        endpoint_id=r.endpoint_id,
        variant_id=r.variant_id,
        state="Starting",
        placement=r.placement,
        attempt=attempt,
        host=started.host,
        port=started.port,
        supervisor_pid=started.supervisor_pid,
        supervisor_started=started.supervisor_started,
        pid=started.pid,
    )


class EndpointController(Controller):
    """Reconciles endpoints with their replica processes (one key per endpoint name)."""

    name = CONTROLLER
    events = {event_type: _endpoint_of for event_type in SERVICE_EVENTS}

    def __init__(
        self,
        runtime: ControlPlane,
        *,
        poll_s: float = 0.25,
        drain_s: float = 2.0,
        workers: int = 8,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("max_backoff_s", 5.0)  # an endpoint is never left for long
        super().__init__(runtime.db, workers=workers, poll_s=poll_s, **kwargs)
        self.runtime = runtime
        self.settings = runtime.settings
        self.plane = plane_for(runtime)
        self.owner_file = root(self.settings.home) / OWNER_FILE
        self.secrets = ReplicaKeys(self.settings.home)
        self.placements = Placements(
            PlacementContext(
                settings=self.settings,
                artifacts=runtime.artifacts,
                cache=ModelCache(self.settings.home, runtime.artifacts),
                secrets=self.secrets,
                owner_file=self.owner_file,
            )
        )
        self.direct = DirectServers(self.plane.router, _authorizer(runtime))
        self.recheck_s = poll_s
        self.replicas = ReplicaReconciler(
            self.db,
            self.plane.router,
            self.placements,
            self.secrets,
            drain_s=drain_s,
            launch=lambda rid: self.enqueue(LAUNCH + rid),
        )
        self.rollouts = RolloutReconciler(self.db, self.plane.router)
        self.autoscaling = AutoscalingReconciler(self.db, self.plane.router)

    # -- the kit's hooks -----------------------------------------------------------------

    def activated(self) -> None:
        # Local replicas watch this file: they stop themselves once the process named in
        # it has been gone for settings.replica_orphan_grace_s (a controller killed with
        # -9); a controller that takes over in time adopts them by rewriting it.
        me = psutil.Process()
        owner = {"pid": me.pid, "started": me.create_time(), "start_ticks": start_ticks(me.pid)}
        self.owner_file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.owner_file, owner)

    def releasing(self) -> None:
        """Stop the replicas that must not outlive this controller (its local ones; Ray
        replicas keep running and the next controller re-attaches them). Their
        ``Starting``/``Ready`` rows go back to ``Pending``, so the next controller starts
        them again (not counted as restarts)."""
        with self.db.transaction(write=False) as session:
            rows = list(session.scalars(select(ReplicaRow)))
            names = {e.id: e.name for e in session.scalars(select(EndpointRow))}
        stopped = set(self.placements.shutdown(rows))
        with self.db.transaction() as session:
            for r in rows:
                row = session.get(ReplicaRow, r.id)
                if row is None or row.id not in stopped or row.state not in ("Starting", "Ready"):
                    continue
                before = row.state
                REPLICA.advance(row, "Pending", what=f"replica {row.id}")
                row.message = "stopped with the control plane"
                row.pid = row.port = None
                row.state_since = row.updated_at = utcnow()
                replica_moved(session, names.get(row.endpoint_id, ""), row, before)

    def close(self) -> None:
        self.direct.close()
        self.replicas.close()
        self.placements.close()
        close_plane(self.runtime)

    # -- keys ----------------------------------------------------------------------------

    def keys(self) -> list[str]:
        with self.db.transaction(write=False) as session:
            endpoints = list(session.scalars(select(EndpointRow)))
        self.autoscaling.forget({v["id"] for ep in endpoints for v in ep.variants})
        names = [ep.name for ep in endpoints]
        return names + [n for n in self.direct.names() if n not in names]

    def reconcile(self, key: str) -> float | None:
        if key.startswith(LAUNCH):
            endpoint = self.replicas.launch(key[len(LAUNCH) :])
            if endpoint is not None:
                self.enqueue(endpoint)
            return None
        replicas: list[ReplicaRow] = []
        rollout: RolloutRow | None = None
        with self.db.transaction(write=False) as session:
            ep = session.scalar(select(EndpointRow).where(EndpointRow.name == key))
            if ep is not None:
                replicas = list(
                    session.scalars(select(ReplicaRow).where(ReplicaRow.endpoint_id == ep.id))
                )
                rollout = session.scalar(
                    select(RolloutRow).where(
                        RolloutRow.endpoint_id == ep.id, RolloutRow.state == "InProgress"
                    )
                )
        if ep is None or ep.status == "Deleting":
            if key in self.direct.names():
                self.direct.stop(key)
            if ep is None:
                return None
        changed = self._reconcile(ep, replicas, rollout)
        self._serve(ep)
        if changed:
            self.plane.router.invalidate()
        return self.recheck_s

    def _reconcile(
        self, ep: EndpointRow, replicas: list[ReplicaRow], rollout: RolloutRow | None
    ) -> bool:
        changed = self.autoscaling.record_cold_starts(ep)
        if ep.status == "Deleting":
            return self.replicas.delete(ep, replicas) or changed
        if rollout is None and self.autoscaling.reconcile(ep, replicas):
            return True  # the next pass starts or drains replicas from the new counts
        changed |= self.replicas.scale(ep, replicas)
        for r in replicas:
            changed |= self.replicas.step(ep, r)
        if rollout is not None:
            changed |= self.rollouts.reconcile(ep, rollout)
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
            move_endpoint(row, status)
            row.message, row.updated_at = message, utcnow()
            controller_event(session, ep.name, "status", message or status, status=status)
            return True


def make_controller(runtime: ControlPlane) -> EndpointController:
    """The background service the endpoints domain declares."""
    return EndpointController(runtime)
