"""Capture writer, rollout arithmetic and alarm evaluation, without any process."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from modelyard.endpoints import rollouts
from modelyard.endpoints.capture import MAX_BODY_BYTES, Capturer, RawBody, body_record
from modelyard.endpoints.router import Counters, _bucket
from modelyard.endpoints.schemas import Alarm, Strategy
from modelyard.endpoints.store import CaptureFileRow
from modelyard.runtime import Runtime


def event(i: int) -> dict[str, object]:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i)
    return {"event_id": f"e{i}", "time": when.isoformat(), "endpoint": "x", "n": i}


def test_capture_batches_files_and_records_them(runtime: Runtime) -> None:
    capturer = Capturer(runtime.db, runtime.artifacts)
    for i in range(7):
        capturer.put("x", event(i), max_batch=3, flush_seconds=3600)
    capturer.put("y", event(100), max_batch=3, flush_seconds=3600)
    capturer.flush()
    with runtime.db.transaction(write=False) as session:
        rows = list(session.scalars(select(CaptureFileRow).order_by(CaptureFileRow.first_time)))
    assert sorted((r.endpoint, r.count) for r in rows) == [("x", 1), ("x", 3), ("x", 3), ("y", 1)]
    lines = [
        json.loads(line)
        for r in rows
        if r.endpoint == "x"
        for line in runtime.artifacts.read_bytes(r.digest).decode().splitlines()
    ]
    assert sorted(e["n"] for e in lines) == list(range(7))
    first = next(r for r in rows if r.endpoint == "x" and r.count == 3)
    assert first.first_time < first.last_time
    capturer.close()


def test_a_full_capture_queue_drops_and_counts_instead_of_waiting(runtime: Runtime) -> None:
    capturer = Capturer(runtime.db, runtime.artifacts, capacity=2)
    capturer._thread = object()  # type: ignore[assignment]  # no writer: the queue stays full
    for i in range(5):
        capturer.put("x", event(i), max_batch=10, flush_seconds=1)
    assert capturer.dropped == 3


def test_queued_bodies_are_bounded_in_bytes(runtime: Runtime) -> None:
    capturer = Capturer(runtime.db, runtime.artifacts, max_bytes=100)
    capturer._thread = object()  # type: ignore[assignment]  # no writer: nothing leaves
    small = {**event(0), "request": RawBody.of("text/csv", b"x" * 60)}
    capturer.put("x", small, max_batch=10, flush_seconds=1)
    capturer.put("x", small, max_batch=10, flush_seconds=1)  # 120 bytes: dropped
    assert capturer.dropped == 1
    huge = RawBody.of("text/csv", b"x" * (MAX_BODY_BYTES + 5), status=200)
    assert huge.body == b"" and huge.record() == {
        "status": 200,
        "content_type": "text/csv",
        "encoding": "omitted",
        "size": MAX_BODY_BYTES + 5,
    }


def test_bodies_are_text_base64_or_left_out() -> None:
    assert body_record("text/csv", b"1,2") == {
        "content_type": "text/csv",
        "encoding": "text",
        "data": "1,2",
    }
    assert body_record("application/x-npy", b"\xff\x00")["encoding"] == "base64"
    big = body_record("text/csv", b"x" * (MAX_BODY_BYTES + 1))
    assert big["encoding"] == "omitted" and big["size"] == MAX_BODY_BYTES + 1


def test_strategies_steps_and_traffic_mix() -> None:
    assert Strategy(type="blue_green").fractions() == [1.0]
    assert Strategy(type="canary", canary_percent=10).fractions() == [0.1, 1.0]
    assert Strategy(type="linear", linear_steps=4).fractions() == [0.25, 0.5, 0.75, 1.0]
    assert Strategy(type="all_at_once", bake_seconds=60).bake() == 0.0
    old = rollouts.normalised(
        [
            {"id": "a", "weight": 3, "shadow": False},
            {"id": "keep", "weight": 1, "shadow": False},
            {"id": "s", "weight": 5, "shadow": True},
        ]
    )
    assert old == {"a": 0.75, "keep": 0.25}
    new = rollouts.normalised(
        [{"id": "b", "weight": 3, "shadow": False}, {"id": "keep", "weight": 1, "shadow": False}]
    )
    half = rollouts.mix(old, new, 0.5)
    assert half == pytest.approx({"a": 0.375, "b": 0.375, "keep": 0.25})
    assert rollouts.mix(old, new, 1.0) == pytest.approx({"b": 0.75, "keep": 0.25})


def test_alarms_fire_on_their_metric_with_the_observed_value() -> None:
    c = Counters()
    for latency, status in [(2.0, 200)] * 8 + [(400.0, 500)] * 2:
        c.requests += 1
        c.errors += status >= 500
        c.buckets[_bucket(latency)] += 1
    rate = Alarm(metric="error_rate", threshold=0.1)
    reason = rollouts.evaluate(rate, c, None, "v2")
    assert reason is not None and "0.200" in reason and "2 of 10" in reason
    assert rollouts.evaluate(Alarm(metric="error_rate", threshold=0.25), c, None, "v2") is None
    # Too few requests to judge.
    assert (
        rollouts.evaluate(Alarm(metric="error_rate", threshold=0.1, min_requests=11), c, None, "v2")
        is None
    )
    p99 = rollouts.evaluate(Alarm(metric="p99_latency_ms", threshold=100), c, None, "v2")
    assert p99 is not None and "p99_latency_ms" in p99
    assert rollouts.evaluate(Alarm(metric="p99_latency_ms", threshold=1000), c, None, "v2") is None
    custom = Alarm(metric="custom", name="kpi", threshold=0.5)
    assert rollouts.evaluate(custom, c, None, "v2") is None
    assert rollouts.evaluate(custom, c, 0.4, "v2") is None
    fired = rollouts.evaluate(custom, c, 0.9, "v2")
    assert fired is not None and "'kpi'" in fired and "0.9" in fired
    with pytest.raises(ValueError):
        Alarm(metric="custom", threshold=1)


def test_latency_quantiles_come_from_the_histogram() -> None:
    c = Counters()
    assert c.quantile(0.99) is None
    for latency in [1.0] * 99 + [1000.0]:
        c.buckets[_bucket(latency)] += 1
    assert 1.0 <= (c.quantile(0.5) or 0) < 1.3
    assert 1.0 <= (c.quantile(0.99) or 0) < 1.3
    assert 1000.0 <= (c.quantile(1.0) or 0) < 1300.0
