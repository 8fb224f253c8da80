"""Rollout arithmetic: traffic weights per step, and alarm evaluation over a bake.

A rollout moves traffic from the old variants' weights ``o`` to the new variants'
weights ``n`` (each normalised to sum 1 over its non-shadow variants). After step ``i``
with fraction ``f_i`` the live weight of variant ``v`` is ``(1 - f_i)·o[v] + f_i·n[v]``;
a variant kept unchanged by the update is in both and keeps its share throughout.

:class:`RolloutReconciler` is the endpoints controller's rollout reconciler: an
``InProgress`` rollout waits for its new replicas (``starting``), then shifts the traffic
weights step by step (``baking``), evaluating its alarms against the router's counters of
the new variants during each bake; an alarm, a new replica that could not start or one
not ready in time sends all traffic back to the old variants at once and records the
rollout as ``RolledBack`` with the reason. Its moves follow
:data:`~modelyard.endpoints.states.ROLLOUT` and ``ROLLOUT_PHASE``. After a restart it
resumes at the current step with a fresh bake (the router's counters start again at zero).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from modelyard.core.db import Database, utcnow
from modelyard.endpoints.history import controller_event
from modelyard.endpoints.router import Counters, Router, stats_of
from modelyard.endpoints.schemas import Alarm, Strategy
from modelyard.endpoints.states import ROLLOUT, ROLLOUT_PHASE, move_endpoint
from modelyard.endpoints.store import EndpointRow, MetricRow, ReplicaRow, RolloutRow

log = logging.getLogger("modelyard.endpoints")


def normalised(variants: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Weights of the non-shadow variants, summing to 1."""
    weights = {v["id"]: float(v["weight"]) for v in variants if not v["shadow"]}
    total = sum(weights.values())
    if total <= 0:
        return {}
    return {vid: w / total for vid, w in weights.items() if w > 0}


def mix(old: dict[str, float], new: dict[str, float], fraction: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for vid in sorted(set(old) | set(new)):
        w = (1.0 - fraction) * old.get(vid, 0.0) + fraction * new.get(vid, 0.0)
        if w > 1e-12:
            out[vid] = w
    return out


def evaluate(
    alarm: Alarm, counters: Counters, custom_max: float | None, variants: str
) -> str | None:
    """The reason the alarm fires, or None. ``counters`` cover the bake so far."""
    if alarm.metric == "custom":
        if custom_max is not None and custom_max > alarm.threshold:
            return (
                f"alarm on custom metric {alarm.name!r} fired: observed {custom_max:g} "
                f"> threshold {alarm.threshold:g} during the bake"
            )
        return None
    if counters.requests < alarm.min_requests:
        return None
    if alarm.metric == "error_rate":
        rate = counters.errors / counters.requests
        if rate > alarm.threshold:
            return (
                f"alarm error_rate fired: observed {rate:.3f} ({counters.errors} of "
                f"{counters.requests} requests to {variants} failed) > threshold "
                f"{alarm.threshold:g}"
            )
        return None
    p99 = counters.quantile(0.99)
    if p99 is not None and p99 > alarm.threshold:
        return (
            f"alarm p99_latency_ms fired: observed {p99:.1f} ms over {counters.requests} "
            f"requests to {variants} > threshold {alarm.threshold:g} ms"
        )
    return None


def _seconds_since(when: dt.datetime) -> float:
    return (utcnow() - when).total_seconds()


def _counters(variant_ids: list[str]) -> Counters:
    total = Counters()
    for c in stats_of(variant_ids).values():
        total.add(c)
    return total


@dataclass
class _Baseline:
    step: int
    counters: Counters


class RolloutReconciler:
    """Moves an endpoint's ``InProgress`` rollout one step; called per endpoint key."""

    def __init__(self, db: Database, router: Router) -> None:
        self.db = db
        self.router = router
        self._baselines: dict[str, _Baseline] = {}

    def reconcile(self, ep: EndpointRow, ro: RolloutRow) -> bool:
        """One step of ``ro``; whether it changed the endpoint's routing."""
        strategy = Strategy.model_validate(ro.strategy)
        new_ids = list(ro.new_variant_ids)
        names = ", ".join(v["name"] for v in ro.to_variants if v["id"] in new_ids) or "new variants"
        if ro.phase == "starting":
            return self._starting(ep, ro, strategy, new_ids, names)
        baseline = self._baselines.get(ro.id)
        if baseline is None or baseline.step != ro.step:
            # A restarted controller: the counters are new, so the bake starts again.
            self._baselines[ro.id] = _Baseline(ro.step, _counters(new_ids))
            with self.db.transaction() as session:
                row = session.get(RolloutRow, ro.id)
                if row is not None and row.state == "InProgress":
                    row.phase_started_at = row.updated_at = utcnow()
            return False
        seen = _counters(new_ids).minus(baseline.counters)
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
            reason = evaluate(alarm, seen, custom, names)
            if reason is not None:
                return self._rollback(ep, ro, reason, fired=alarm.model_dump(mode="json"))
        if _seconds_since(ro.phase_started_at) < strategy.bake():
            return False
        if ro.step + 1 < len(ro.steps):
            return self._go_to_step(ep, ro, ro.step + 1)
        return self._complete(ep, ro)

    def _starting(
        self, ep: EndpointRow, ro: RolloutRow, strategy: Strategy, new_ids: list[str], names: str
    ) -> bool:
        with self.db.transaction(write=False) as session:
            reps = [
                r
                for r in session.scalars(select(ReplicaRow).where(ReplicaRow.endpoint_id == ep.id))
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

    def _go_to_step(self, ep: EndpointRow, ro: RolloutRow, step: int) -> bool:
        traffic = mix(normalised(ro.from_variants), normalised(ro.to_variants), ro.steps[step])
        with self.db.transaction() as session:
            row = session.get(RolloutRow, ro.id)
            endpoint = session.get(EndpointRow, ep.id)
            if row is None or endpoint is None or row.state != "InProgress":
                return False
            ROLLOUT_PHASE.check(row.phase, "baking", what=f"rollout {row.id}")
            row.step, row.phase = step, "baking"
            row.phase_started_at = row.updated_at = utcnow()
            endpoint.traffic = traffic
            endpoint.generation += 1
            endpoint.updated_at = utcnow()
            controller_event(
                session,
                ep.name,
                "traffic_shifted",
                f"step {step + 1} of {len(ro.steps)}: {ro.steps[step]:.0%} to the new variants",
                rollout=ro.id,
                traffic=traffic,
            )
        self._baselines[ro.id] = _Baseline(step, _counters(list(ro.new_variant_ids)))
        self.router.invalidate(ep.name)
        return True

    def _finish(self, row: RolloutRow, state: str) -> None:
        ROLLOUT_PHASE.check(row.phase, "done", what=f"rollout {row.id}")
        ROLLOUT.advance(row, state, what=f"rollout {row.id}")
        row.phase = "done"
        row.finished_at = row.updated_at = utcnow()

    def _complete(self, ep: EndpointRow, ro: RolloutRow) -> bool:
        with self.db.transaction() as session:
            row = session.get(RolloutRow, ro.id)
            endpoint = session.get(EndpointRow, ep.id)
            if row is None or endpoint is None or row.state != "InProgress":
                return False
            self._finish(row, "Completed")
            endpoint.variants = list(ro.to_variants)
            endpoint.traffic = normalised(ro.to_variants)
            move_endpoint(endpoint, "InService")
            endpoint.message = ""
            endpoint.generation += 1
            endpoint.updated_at = utcnow()
            controller_event(
                session, ep.name, "rollout_completed", "rollout completed", rollout=ro.id
            )
        self._baselines.pop(ro.id, None)
        self.router.invalidate(ep.name)
        return True

    def _rollback(
        self, ep: EndpointRow, ro: RolloutRow, reason: str, *, fired: dict[str, Any] | None = None
    ) -> bool:
        with self.db.transaction() as session:
            row = session.get(RolloutRow, ro.id)
            endpoint = session.get(EndpointRow, ep.id)
            if row is None or endpoint is None or row.state != "InProgress":
                return False
            self._finish(row, "RolledBack")
            row.reason = reason
            endpoint.variants = list(ro.from_variants)
            endpoint.traffic = normalised(ro.from_variants)
            move_endpoint(endpoint, "InService")
            endpoint.message = f"rollout {ro.id} rolled back: {reason}"
            endpoint.generation += 1
            endpoint.updated_at = utcnow()
            controller_event(
                session, ep.name, "rollout_rolled_back", reason, rollout=ro.id, alarm=fired or {}
            )
        self._baselines.pop(ro.id, None)
        self.router.invalidate(ep.name)
        log.warning("endpoint %s: rollout %s rolled back: %s", ep.name, ro.id, reason)
        return True
