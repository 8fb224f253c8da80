"""The autoscaler's decisions: target tracking on in-flight requests, and scale to zero.

Pure bookkeeping, no I/O: the controller feeds it one sample per variant per pass (the
requests in flight to the variant's replicas, plus the requests the router holds while
the variant has none) and writes the decision it returns. State (the samples of the
last ``window_s`` seconds, the time of the last change) lives in memory: after a
restart the window fills again and the cooldowns count from the restart.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from modelyard.endpoints.schemas import Autoscaling


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
