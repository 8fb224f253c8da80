"""Metric ingestion in columns and histories downsampled in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random

import httpx
import pytest
from sqlalchemy import delete

from modelyard.client.sdk import Client, connect
from modelyard.client.tracking import _Buffer, _build
from modelyard.client.transport import EmbeddedTransport
from modelyard.errors import Conflict, InvalidInput
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from modelyard.tracking import metrics as tracking_metrics
from modelyard.tracking import service as tracking_service
from modelyard.tracking.schemas import MAX_BATCH_KEYS, MAX_BATCH_POINTS, LogBatch
from modelyard.tracking.store import MetricTileRow
from testkit import LiveServer


def _sdk(runtime: Runtime) -> Client:
    return Client(EmbeddedTransport(runtime, local_principal()))


def _columns(keys: list[str], points: list[tuple[int, float, int]]) -> dict[str, object]:
    return {
        "keys": keys,
        "key_index": [k for k, _, _ in points],
        "values": [v for _, v, _ in points],
        "steps": [s for _, _, s in points],
        "timestamps": [1_700_000_000_000 + s for _, _, s in points],
    }


def _log_columns(c: Client, run_id: str, columns: dict[str, object]) -> None:
    c.tracking._send(LogBatch.model_validate({"run_id": run_id, "points": columns}))


def _m4_reference(values: list[float], width: int) -> set[int]:
    """Steps M4 keeps when step i holds values[i]: per bucket first, last, argmin, argmax."""
    kept: set[int] = set()
    for start in range(0, len(values), width):
        steps = range(start, min(start + width, len(values)))
        kept |= {steps[0], steps[-1]}
        finite = [i for i in steps if not math.isnan(values[i])]
        if finite:
            kept.add(min(finite, key=lambda i: (values[i], i)))
            kept.add(min(finite, key=lambda i: (-values[i], i)))
    return kept


def test_downsampled_history_of_50k_points(runtime: Runtime) -> None:
    c = _sdk(runtime)
    run = c.tracking.create_run("m4")
    rng = random.Random(7)
    # Two periods per 500 steps: every bucket's first, last, min and max are distinct.
    values = [math.sin(i * 2 * math.pi / 250) * (1 + rng.random() / 100) for i in range(50_000)]
    values[12_345], values[40_001] = -50.0, 50.0
    values[777] = math.nan
    for start in range(0, 50_000, MAX_BATCH_POINTS):
        chunk = [(0, values[i], i) for i in range(start, start + MAX_BATCH_POINTS)]
        _log_columns(c, run.id, _columns(["x"], chunk))
    hist = c.tracking.metric_history(run.id, "x", max_points=400)
    steps = [p.step for p in hist.points]
    # 100 buckets of 500 steps, each keeping 4 distinct points (first, last, min, max).
    assert hist.total == 50_000 and len(hist.points) == 400
    assert steps == sorted(steps) and len(set(steps)) == 400
    assert steps[0] == 0 and steps[-1] == 49_999
    assert {12_345, 40_001} <= set(steps)
    assert set(steps) == _m4_reference(values, 500)
    by_step = {p.step: p for p in hist.points}
    assert by_step[12_345].value == -50.0 and by_step[40_001].value == 50.0
    assert by_step[0].value == values[0] and by_step[49_999].value == values[49_999]
    for p in hist.points:  # every kept point is a stored point, unchanged
        assert p.value == values[p.step] and p.timestamp == 1_700_000_000_000 + p.step
    # Fewer points than asked for: all of them, in order.
    small = c.tracking.metric_history(run.id, "x", max_points=100_000)
    assert small.total == 50_000 and [p.step for p in small.points] == list(range(50_000))
    assert math.isnan(small.points[777].value)
    noisy = c.tracking.create_run("m4-noisy")
    walk = [rng.gauss(0, 1) for _ in range(20_000)]
    for start in range(0, 20_000, MAX_BATCH_POINTS):
        chunk = [(0, walk[i], i) for i in range(start, start + MAX_BATCH_POINTS)]
        _log_columns(c, noisy.id, _columns(["y"], chunk))
    got = c.tracking.metric_history(noisy.id, "y", max_points=200)
    assert {p.step for p in got.points} == _m4_reference(walk, 400)
    cmp = c.tracking.compare([run.id], ["x"], max_points=40)
    kept = cmp.histories["x"][run.id]
    assert len(kept) == 40 and kept[0].step == 0 and kept[-1].step == 49_999
    assert {p.value for p in kept} >= {-50.0, 50.0}


Kept = set[tuple[int, int, float | None]]


def _m4_points(points: list[tuple[int, int, float]], x0: int, width: int) -> Kept:
    """M4 of (step, timestamp, value) points in logging order, buckets of ``width`` steps
    from ``x0``: per bucket the first and last point in (step, timestamp, logging) order
    and the first holding the minimum and the maximum non-NaN value (NaN as None)."""
    ordered = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1], i))
    buckets: dict[int, list[int]] = {}
    for i in ordered:
        buckets.setdefault((points[i][0] - x0) // width, []).append(i)
    kept: set[int] = set()
    for members in buckets.values():
        kept |= {members[0], members[-1]}
        finite = [i for i in members if not math.isnan(points[i][2])]
        if finite:
            kept.add(min(finite, key=lambda i: points[i][2]))  # min() keeps the first
            kept.add(max(finite, key=lambda i: points[i][2]))
    return {(points[i][0], points[i][1], _none(points[i][2])) for i in kept}


def _none(value: float) -> float | None:
    return None if math.isnan(value) else value


def test_long_histories_are_read_from_tiles_as_exact_m4(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiles answer M4 over tile-aligned buckets exactly as the points would: points out
    of order across batches, repeated steps, ties, NaN, infinities, a bucket of only NaN,
    negative steps; and a history whose tiles miss points (logged before tiles existed)
    is read from the points."""
    monkeypatch.setattr(tracking_metrics, "TILE_MIN_POINTS", 0)
    read_from_tiles: list[bool] = []
    real = tracking_metrics._from_tiles

    def spy(*args: object) -> object:
        got = real(*args)  # type: ignore[arg-type]
        read_from_tiles.append(got is not None)
        return got

    monkeypatch.setattr(tracking_metrics, "_from_tiles", spy)
    c = _sdk(runtime)
    run = c.tracking.create_run("tiles")
    rng = random.Random(11)
    steps = list(range(-700, 40_000))
    rng.shuffle(steps)
    steps += [rng.randrange(-700, 40_000) for _ in range(3_000)]  # repeated steps
    points: list[tuple[int, int, float]] = []
    for st in steps:
        value = round(rng.gauss(0, 1), 1)  # few distinct values: ties in every bucket
        if 5_100 <= st < 5_700 or rng.random() < 0.01:
            value = math.nan
        points.append((st, 1_700_000_000_000 + rng.randrange(3), value))
    points[100] = (points[100][0], points[100][1], math.inf)
    points[200] = (points[200][0], points[200][1], -math.inf)
    for start in range(0, len(points), MAX_BATCH_POINTS):
        chunk = points[start : start + MAX_BATCH_POINTS]
        cols = {
            "keys": ["x"],
            "key_index": [0] * len(chunk),
            "values": [v for _, _, v in chunk],
            "steps": [st for st, _, _ in chunk],
            "timestamps": [ts for _, ts, _ in chunk],
        }
        _log_columns(c, run.id, cols)
    lo, hi = min(steps), max(steps)
    for max_points, level in ((400, 8), (32, 12)):
        plan = tracking_metrics.tile_buckets(lo, hi, max_points)
        assert plan is not None and plan[0] == level
        _, x0, width = plan
        hist = c.tracking.metric_history(run.id, "x", max_points=max_points)
        got = [(p.step, p.timestamp, _none(p.value)) for p in hist.points]
        assert read_from_tiles.pop() is True
        assert hist.total == len(points) and len(got) <= max_points
        assert [g[:2] for g in got] == sorted(g[:2] for g in got)
        assert len(set(got)) == len(got) and set(got) == _m4_points(points, x0, width)
        assert {math.inf, -math.inf} <= {p.value for p in hist.points}
    # Every point at one step: the axis is the timestamp, which tiles do not cover.
    flat = {"keys": ["t"], "key_index": [0] * 3_000, "values": [float(i % 7) for i in range(3_000)]}
    _log_columns(c, run.id, {**flat, "steps": [0] * 3_000, "timestamps": list(range(3_000))})
    on_time = c.tracking.metric_history(run.id, "t", max_points=100)
    assert read_from_tiles.pop() is False
    assert on_time.points[0].timestamp == 0 and on_time.points[-1].timestamp == 2_999
    # Tiles missing (a history from before them): the points answer, buckets not snapped.
    with runtime.db.transaction() as session:
        session.execute(delete(MetricTileRow).where(MetricTileRow.run_id == run.id))
    hist = c.tracking.metric_history(run.id, "x", max_points=400)
    assert read_from_tiles.pop() is False
    width = -(-(hi - lo + 1) // 100)
    got = [(p.step, p.timestamp, _none(p.value)) for p in hist.points]
    assert set(got) == _m4_points(points, lo, width)


def test_downsampling_constant_repeated_and_single_step_metrics(runtime: Runtime) -> None:
    c = _sdk(runtime)
    run = c.tracking.create_run("m4-edge")
    # A constant metric: ties everywhere must not return every point.
    _log_columns(c, run.id, _columns(["flat"], [(0, 1.0, i) for i in range(5_000)]))
    flat = c.tracking.metric_history(run.id, "flat", max_points=40)
    assert flat.total == 5_000 and 2 <= len(flat.points) <= 40
    assert flat.points[0].step == 0 and flat.points[-1].step == 4_999
    # Every point at step 0 (logged without steps): the axis becomes the timestamp.
    pts = {
        "keys": ["nostep"],
        "key_index": [0] * 3_000,
        "values": [float(i % 17) for i in range(3_000)],
        "steps": [0] * 3_000,
        "timestamps": [1_000 + i for i in range(3_000)],
    }
    _log_columns(c, run.id, pts)
    hist = c.tracking.metric_history(run.id, "nostep", max_points=100)
    stamps = [p.timestamp for p in hist.points]
    assert 4 < len(stamps) <= 100 and stamps == sorted(stamps)
    assert stamps[0] == 1_000 and stamps[-1] == 3_999
    assert {p.value for p in hist.points} >= {0.0, 16.0}
    # Only NaN values: first and last kept, no min or max to find.
    _log_columns(c, run.id, _columns(["nan"], [(0, math.nan, i) for i in range(100)]))
    nan = c.tracking.metric_history(run.id, "nan", max_points=8)
    assert nan.points[0].step == 0 and nan.points[-1].step == 99
    assert len(nan.points) <= 8 and all(math.isnan(p.value) for p in nan.points)


def test_columns_and_points_in_one_batch_update_summaries(runtime: Runtime) -> None:
    c = _sdk(runtime)
    run = c.tracking.create_run("cols")
    cols = _columns(["a", "b"], [(0, 3.0, 5), (1, 1.0, 0), (0, -1.0, 2), (1, math.nan, 9)])
    c.tracking._send(
        LogBatch.model_validate(
            {
                "run_id": run.id,
                "points": cols,
                "metrics": [{"key": "b", "value": 7.0, "step": 1}, {"key": "c", "value": 2}],
            }
        )
    )
    m = c.tracking.get_run(run.id).metrics
    assert (m["a"].count, m["a"].min, m["a"].max, m["a"].latest, m["a"].step) == (
        2,
        -1.0,
        3.0,
        3.0,
        5,
    )
    assert m["b"].count == 3 and (m["b"].min, m["b"].max) == (1.0, 7.0)
    assert math.isnan(m["b"].latest) and m["b"].step == 9
    assert m["c"].count == 1 and m["c"].latest == 2.0
    # A second batch merges into the summaries: an older step does not replace latest.
    _log_columns(c, run.id, _columns(["a"], [(0, -9.0, 1), (0, 4.0, 5)]))
    a = c.tracking.get_run(run.id).metrics["a"]
    assert (a.count, a.min, a.max, a.latest, a.step) == (4, -9.0, 4.0, 4.0, 5)
    assert c.tracking.search_runs("cols", "metrics.a.min < -8 and metrics.b > 0").total == 0
    assert c.tracking.search_runs("cols", "metrics.a.min < -8 and metrics.b.max > 6").total == 1


@pytest.mark.parametrize(
    "columns, message",
    [
        (
            {"keys": ["a"], "key_index": [0, 0], "values": [1.0], "steps": [0], "timestamps": [0]},
            "same length",
        ),
        (
            {"keys": ["a"], "key_index": [1], "values": [1.0], "steps": [0], "timestamps": [0]},
            "out of range",
        ),
        (
            {
                "keys": ["a", "a"],
                "key_index": [0],
                "values": [1.0],
                "steps": [0],
                "timestamps": [0],
            },
            "distinct",
        ),
        (
            {
                "keys": ["bad key"],
                "key_index": [0],
                "values": [1.0],
                "steps": [0],
                "timestamps": [0],
            },
            "keys",
        ),
        (
            {"keys": ["a"], "key_index": [0], "values": [1.0], "steps": [2**60], "timestamps": [0]},
            "steps",
        ),
        (
            {"keys": ["a"], "key_index": [0], "values": [1.0], "steps": [0], "timestamps": [-1]},
            "timestamps",
        ),
        (
            {"keys": ["a"], "key_index": [-1], "values": [1.0], "steps": [0], "timestamps": [0]},
            "key_index",
        ),
        (
            {"keys": ["a"], "key_index": [0], "values": ["x"], "steps": [0], "timestamps": [0]},
            "values",
        ),
    ],
)
def test_bad_columns_are_refused_and_nothing_is_written(
    live_server: LiveServer, columns: dict[str, object], message: str
) -> None:
    c = connect(live_server.url)
    run = c.tracking.create_run("bad-cols")
    with pytest.raises(InvalidInput, match=message):  # the SDK refuses it before sending
        _build(LogBatch, run_id=run.id, points=columns)
    response = httpx.post(
        f"{live_server.url}/api/v1/runs/{run.id}/batch", json={"points": columns}, timeout=30
    )
    assert response.status_code == 400, response.text
    assert message in response.text
    assert c.tracking.get_run(run.id).metrics == {}
    c.close()


def test_too_many_points_in_one_batch(client: Client) -> None:
    run = client.tracking.create_run("too-many")
    n = MAX_BATCH_POINTS // 2 + 1
    req = LogBatch.model_validate(
        {
            "run_id": run.id,
            "points": _columns(["a"], [(0, 1.0, i) for i in range(n)]),
            "metrics": [{"key": "b", "value": 1.0, "step": i} for i in range(n)],
        }
    )
    with pytest.raises(InvalidInput, match="at most"):
        client.tracking._send(req)
    assert client.tracking.get_run(run.id).metrics == {}


def test_active_run_checks_points_in_the_caller(client: Client) -> None:
    with client.tracking.start_run("caller-checks", flush_interval=3600) as run:
        with pytest.raises(InvalidInput, match="key"):
            run.log_metric("bad key", 1.0)
        with pytest.raises(InvalidInput, match="step"):
            run.log_metric("m", 1.0, step=2**60)
        with pytest.raises(InvalidInput, match="timestamp"):
            run.log_metric("m", 1.0, timestamp=-5)
        for i in range(1_500):  # more distinct keys than one request may carry
            run.log_metric(f"k{i}", float(i), step=i)
        assert run.pending == 1_500
    got = client.tracking.get_run(run.id)
    assert len(got.metrics) == 1_500 and got.metrics["k1499"].latest == 1499.0
    assert got.status == "FINISHED"


def test_points_to_an_ended_run_are_refused(client: Client) -> None:
    run = client.tracking.create_run("ended")
    client.tracking.end_run(run.id)
    with pytest.raises(Conflict):
        _log_columns(client, run.id, _columns(["a"], [(0, 1.0, 0)]))


def test_a_failed_background_send_reaches_the_logging_caller(client: Client) -> None:
    run = client.tracking.start_run("bg-fail", buffer_size=10, flush_interval=3600)
    client.tracking.end_run(run.id, "KILLED")  # every send now fails
    logged = 0
    with pytest.raises(Conflict, match="KILLED"):
        for i in range(100_000):  # the caller is told; it neither hangs nor loses points
            run.log_metric("m", float(i), step=i)
            logged += 1
    assert logged < 100_000 and run.pending in (logged, logged + 1)
    with pytest.raises(Conflict):
        run.end()
    assert client.tracking.get_run(run.id).metrics == {}


@pytest.mark.parametrize("walk_factor", [0, 10_000])  # always / never walk the index
def test_search_ordered_by_a_metric_pages_like_a_full_sort(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, walk_factor: int
) -> None:
    """Pages from the index walk equal slices of a full sort: runs with a value first in
    order, then runs whose value is NaN or missing (NULLS LAST)."""
    monkeypatch.setattr(tracking_service, "_INDEX_WALK_FACTOR", walk_factor)
    c = _sdk(runtime)
    rng = random.Random(3)
    expected: list[tuple[float, str]] = []
    for i in range(80):
        run = c.tracking.create_run("order", name=f"r{i}")
        kind = i % 8
        metrics: list[dict[str, object]] = [{"key": "f", "value": 1.0}]
        if kind == 0:  # no "s" at all
            expected.append((math.inf, run.id))
        elif kind == 1:  # "s" is NaN
            metrics.append({"key": "s", "value": math.nan})
            expected.append((math.inf, run.id))
        else:
            v = round(rng.uniform(0, 10), 1)  # ties on purpose
            metrics.append({"key": "s", "value": v})
            expected.append((-v, run.id))
        c.tracking.log_batch(run.id, metrics=metrics)
    # Ties and the NaN/missing tail are ordered by start time, newest first.
    start = {r.id: r.start_time for r in c.tracking.search_runs("order", limit=1000).runs}
    order = [
        run_id
        for _, _, run_id in sorted(
            (v, -start[run_id].timestamp(), run_id) for v, run_id in expected
        )
    ]
    for offset, limit in [(0, 5), (3, 4), (60, 7), (66, 5), (70, 3), (78, 5), (85, 2)]:
        page = c.tracking.search_runs(
            "order", "metrics.f > 0", order_by="metrics.s desc", limit=limit, offset=offset
        )
        assert page.total == 80
        got = [r.id for r in page.runs]
        want = order[offset : offset + limit]
        # Runs started within the same clock tick may swap; their sort keys must not.
        assert [(_key(expected, i), start[i]) for i in got] == [
            (_key(expected, i), start[i]) for i in want
        ]


def _key(expected: list[tuple[float, str]], run_id: str) -> float:
    return next(v for v, i in expected if i == run_id)


def test_buffered_points_with_more_keys_than_one_batch_holds(runtime: Runtime) -> None:
    """The client splits its buffer where a request would pass MAX_BATCH_KEYS keys, and a
    batch whose send failed goes back to the front in its order."""
    buffer = _Buffer()
    names = [f"k{i}" for i in range(MAX_BATCH_KEYS + 500)]
    for i, name in enumerate(names):
        buffer.keys.append(name)
        buffer.values.append(float(i))
        buffer.steps.append(i)
        buffer.stamps.append(1_000 + i)
    first = buffer.take()
    assert first["keys"] == names[:MAX_BATCH_KEYS] and len(buffer) == 500
    assert first["key_index"] == list(range(MAX_BATCH_KEYS)) and first["steps"][-1] == 999
    buffer.put_back(first)
    assert buffer.keys == names and buffer.steps == list(range(len(names)))
    c = _sdk(runtime)
    with c.tracking.start_run("many-keys", flush_interval=3600) as run:
        for i, name in enumerate(names):
            run.log_metric(name, float(i), step=i)
    stored = c.tracking.get_run(run.id).metrics
    assert len(stored) == len(names)
    assert all(stored[n].count == 1 and stored[n].latest == i for i, n in enumerate(names))
