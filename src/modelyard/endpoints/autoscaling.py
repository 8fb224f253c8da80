"""The autoscaler's decisions: target tracking on in-flight requests, and scale to zero.

:class:`Autoscaler` is pure bookkeeping, no I/O: the controller feeds it one sample per
variant per pass (the requests in flight to the variant's replicas, plus the requests the
router holds while the variant has none). State (the samples of the last ``window_s``
seconds, the time of the last change) lives in memory: after a restart the window fills
again and the cooldowns count from the restart.

:class:`AutoscalingReconciler` is the endpoints controller's autoscaling reconciler: for
an ``InService`` endpoint it writes each decision as the variant's new ``replicas`` and
``last_scaling`` with a ``scaled`` event (the replica reconciler then adds or drains
replicas), and stores the cold starts the routers saw (``cold_start`` events, the
variant's ``last_cold_start_ms``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from modelyard.core.db import Database, utcnow
from modelyard.endpoints.history import controller_event
from modelyard.endpoints.router import Router, held, inflight_of, last_request, take_cold_starts
from modelyard.endpoints.schemas import Autoscaling
from modelyard.endpoints.store import EndpointRow, ReplicaRow


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    in_flight_mean: float


@dataclass
class _State:
    changed: float
    active: float
    samples: deque[tuple[float, float]] = field(default_factory=deque)


class Autoscaler:
    """One desired replica count per variant, from the samples it was given."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}

    def decide(
        self,
        variant_id: str,
        spec: Autoscaling,
        current: int,
        in_flight: float,
        last_request: float | None,
        now: float,
        starting: bool = False,
    ) -> Decision | None:
        """A new count for the variant, or None to keep ``current``.

        ``now`` and ``last_request`` are ``time.monotonic()`` seconds. From zero, any
        demand starts one replica at once (no cooldown: a request is waiting). With
        ``min_replicas`` 0, a variant with nothing in flight and no request for
        ``idle_seconds`` goes to zero; the idle time counts from its last change or the
        last pass where a replica was still ``starting`` at the earliest (a replica that
        loads slowly is never stopped before it could serve).
        Otherwise the count tracks ``ceil(mean in-flight / target)`` within the bounds,
        a change waiting for the cooldown of its direction since the previous change.
        """
        state = self._states.setdefault(variant_id, _State(changed=now, active=now))
        if starting:
            state.active = now
        state.samples.append((now, in_flight))
        while state.samples and state.samples[0][0] < now - spec.window_s:
            state.samples.popleft()
        mean = sum(v for _, v in state.samples) / len(state.samples)
        if current == 0:
            if in_flight > 0:
                return Decision(1, "a request arrived while scaled to zero", mean)
            return None
        if spec.min_replicas == 0 and in_flight == 0:
            idle = now - max(last_request or state.active, state.changed, state.active)
            if idle >= spec.idle_seconds:
                return Decision(
                    0,
                    f"no request for {idle:.0f} s (idle_seconds {spec.idle_seconds:g}): "
                    "scaled to zero",
                    mean,
                )
        # A hair below the ratio so that a mean of exactly 2 x target asks for 2, not 3.
        desired = spec.clamp(math.ceil(mean / spec.target_in_flight - 1e-9))
        since = now - state.changed
        if desired > current and since >= spec.scale_out_cooldown_s:
            direction = "out"
        elif desired < current and since >= spec.scale_in_cooldown_s:
            direction = "in"
        else:
            return None
        return Decision(
            desired,
            f"scale {direction} {current} -> {desired}: {mean:.2f} requests in flight on "
            f"average over {spec.window_s:g} s, target {spec.target_in_flight:g} per replica",
            mean,
        )

    def changed(self, variant_id: str, now: float) -> None:
        """The decision was written: the cooldowns (and the idle time) count from ``now``."""
        state = self._states.get(variant_id)
        if state is not None:
            state.changed = now

    def forget(self, keep: set[str]) -> None:
        """Drop the state of variants that no longer exist."""
        for vid in [v for v in self._states if v not in keep]:
            del self._states[vid]


class AutoscalingReconciler:
    """Writes the autoscaler's replica counts and the cold starts; called per endpoint key."""

    def __init__(self, db: Database, router: Router) -> None:
        self.db = db
        self.router = router
        self.autoscaler = Autoscaler()

    def forget(self, keep: set[str]) -> None:
        self.autoscaler.forget(keep)

    def reconcile(self, ep: EndpointRow, replicas: list[ReplicaRow]) -> bool:
        """Write new replica counts for ``ep``'s variants; True if any changed."""
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
                controller_event(
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
        self.router.invalidate(ep.name)
        return True

    def record_cold_starts(self, ep: EndpointRow) -> bool:
        """Store the cold-start times the routers saw (ms) on ``ep``'s variants."""
        cold = take_cold_starts(v["id"] for v in ep.variants)
        if not cold:
            return False
        with self.db.transaction() as session:
            row = session.get(EndpointRow, ep.id, with_for_update=True)
            if row is None:
                return False
            variants = [dict(v) for v in row.variants]
            for v in variants:
                if v["id"] in cold:
                    v["last_cold_start_ms"] = cold[v["id"]]
                    controller_event(
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
