"""Rollout arithmetic: traffic weights per step, and alarm evaluation over a bake.

A rollout moves traffic from the old variants' weights ``o`` to the new variants'
weights ``n`` (each normalised to sum 1 over its non-shadow variants). After step ``i``
with fraction ``f_i`` the live weight of variant ``v`` is ``(1 - f_i)·o[v] + f_i·n[v]``;
a variant kept unchanged by the update is in both and keeps its share throughout.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from modelyard.endpoints.router import Counters
from modelyard.endpoints.schemas import Alarm


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
