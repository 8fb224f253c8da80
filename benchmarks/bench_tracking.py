"""Tracking beside MLflow: metric ingestion and run search, both against real servers.

    .venv/bin/python -m benchmarks.bench_tracking [--quick] [--json PATH]

Both peers run on this machine in this run, each on SQLite with its default settings:

- MLflow: ``mlflow server --backend-store-uri sqlite:///… --workers 1`` (a subprocess),
  driven by ``MlflowClient`` over HTTP;
- modelyard remote: ``modelyard up`` (a subprocess, SQLite in WAL with synchronous=FULL),
  driven by ``modelyard.connect(url)``;
- modelyard embedded: ``modelyard.connect(home=…)`` in this process (same SQLite settings).

Ingestion: 100,000 points (10 keys x 10,000 steps; ``--quick``: 10 x 2,000). modelyard
logs every point with ``run.log_metric`` (buffered, flushed in batches) and the clock stops
after ``run.end()`` has returned, i.e. once every point is acknowledged and durable;
MLflow sends ``log_batch`` calls of 1,000 points; MLflow's single ``log_metric`` is timed
for at most 20 s or 2,000 calls. Every figure is points per second, and each side's
stored point count is checked afterwards.

Search: experiments of 1,000 and 10,000 runs (``--quick``: 200 and 1,000) with 5 params
and 5 metrics each, the same values in both systems; the query is
``metrics.m1 > 0.5`` ordered by ``metrics.m2`` descending, first page of 100. p50 of up
to 10 timed calls after one warm-up (fewer if a side's calls pass a time budget), and the
two systems' pages are checked to hold the same m2 values. Loading that data is not
timed; to keep the run short it is written through each system's own store layer in
this process before the servers start: the rows each system's ``create_run`` and
``log_batch`` write, inserted through its own table models in one transaction per
experiment (the servers then open the files with their default settings).

Long history: one metric of 1,000,000 points (``--quick``: 200,000) logged embedded in
10,000-point batches; p50 of a ``max_points=1000`` read (what the console's chart asks
for) from the tiles written at ingest and, for comparison, downsampled from the points
(the path without tiles). Not timed against MLflow here: ``bench_console`` charts the
same kind of metric beside the MLflow UI.

Goals (tracking issue): remote ingestion >= 20x MLflow ``log_batch``; embedded >= 100,000
points/s; search p50 >= 20x faster than MLflow's ``search_runs``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_JSON = REPO / "benchmarks" / ".data" / "bench_tracking.json"
KEYS = [f"k{i}" for i in range(10)]
MLFLOW_BATCH = 1_000
SINGLE_CALLS = 2_000
SINGLE_SECONDS = 20.0
SEARCH_REPS = 10
SEARCH_BUDGET_S = 60.0  # per side and size; at least 3 timed calls are made regardless
FILTER = "metrics.m1 > 0.5"
PAGE = 100
INGEST_GOAL_RATIO = 20.0
EMBEDDED_GOAL = 100_000.0
SEARCH_GOAL_RATIO = 20.0
LONG_MAX_POINTS = 1_000  # what the console's chart asks for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not answer {url} within {timeout:.0f} s")


@contextlib.contextmanager
def server(cmd: list[str], health: str, what: str, log: Path) -> Iterator[None]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
        try:
            wait_http(health, proc, what)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def values(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.random() for _ in range(n)]


# --- ingestion ---------------------------------------------------------------------------


def ingest_modelyard(client: Any, steps: int) -> float:
    """Points/s of run.log_metric for every point, clock stopped after run.end()."""
    vals = values(steps, 1)
    start = time.perf_counter()
    with client.tracking.start_run("ingest") as run:
        for step in range(steps):
            value = vals[step]
            for key in KEYS:
                run.log_metric(key, value, step=step)
    elapsed = time.perf_counter() - start
    stored = client.tracking.get_run(run.id).metrics
    counts = {k: stored[k].count for k in KEYS}
    if set(counts.values()) != {steps}:
        raise SystemExit(f"modelyard stored {counts}, expected {steps} points per key")
    return steps * len(KEYS) / elapsed


def long_history(client: Any, points: int) -> dict[str, Any]:
    """p50 of a downsampled read (``max_points=LONG_MAX_POINTS``) of one ``points``-long
    metric, from the tiles and from the points (tiles turned off for that read)."""
    from modelyard.tracking import metrics
    from modelyard.tracking.schemas import LogBatch, MetricColumns

    run = client.tracking.create_run("long-history", name="long")
    for start in range(0, points, 10_000):
        chunk = [1.0 / (1 + s * 1e-4) + (s % 97) * 1e-3 for s in range(start, start + 10_000)]
        cols = MetricColumns(
            keys=["loss"],
            key_index=[0] * len(chunk),
            values=chunk,
            steps=list(range(start, start + len(chunk))),
            timestamps=[1_700_000_000_000 + start] * len(chunk),
        )
        client.transport.call("tracking.log_batch", LogBatch(run_id=run.id, points=cols))

    def read() -> list[Any]:
        hist = client.tracking.metric_history(run.id, "loss", max_points=LONG_MAX_POINTS)
        if hist.total != points:
            raise SystemExit(f"long history: {hist.total} points stored, not {points}")
        return list(hist.points)

    out: dict[str, Any] = {"points": points, "max_points": LONG_MAX_POINTS}
    tiled_times, tiled = timed(read)
    saved = metrics.TILE_MIN_POINTS
    metrics.TILE_MIN_POINTS = points + 1  # the same read, downsampled from the points
    try:
        raw_times, raw = timed(read)
    finally:
        metrics.TILE_MIN_POINTS = saved
    if (tiled[0], tiled[-1]) != (raw[0], raw[-1]) or len(tiled) > LONG_MAX_POINTS:
        raise SystemExit("long history: the tiled read lost the first or last point")
    out.update(
        tiles_p50_ms=statistics.median(tiled_times) * 1000,
        points_p50_ms=statistics.median(raw_times) * 1000,
        tiles_returned=len(tiled),
        points_returned=len(raw),
    )
    print(
        f"  history of {points:,} points (max_points={LONG_MAX_POINTS}): tiles "
        f"{out['tiles_p50_ms']:.1f} ms, from the points {out['points_p50_ms']:.1f} ms"
    )
    return out


def ingest_mlflow_batch(client: Any, experiment_id: str, steps: int) -> float:
    from mlflow.entities import Metric

    vals = values(steps, 1)
    run_id = client.create_run(experiment_id).info.run_id
    start = time.perf_counter()
    batch: list[Any] = []
    for step in range(steps):
        value = vals[step]
        for key in KEYS:
            batch.append(Metric(key, value, int(time.time() * 1000), step))
            if len(batch) == MLFLOW_BATCH:
                client.log_batch(run_id, metrics=batch)
                batch = []
    if batch:
        client.log_batch(run_id, metrics=batch)
    elapsed = time.perf_counter() - start
    stored = len(client.get_metric_history(run_id, KEYS[0]))
    if stored != steps:
        raise SystemExit(f"MLflow stored {stored} points of {KEYS[0]}, expected {steps}")
    return steps * len(KEYS) / elapsed


def ingest_mlflow_single(client: Any, experiment_id: str) -> tuple[float, int]:
    run_id = client.create_run(experiment_id).info.run_id
    vals = values(SINGLE_CALLS, 1)
    calls = 0
    start = time.perf_counter()
    while calls < SINGLE_CALLS and time.perf_counter() - start < SINGLE_SECONDS:
        client.log_metric(run_id, KEYS[calls % len(KEYS)], vals[calls], step=calls // len(KEYS))
        calls += 1
    elapsed = time.perf_counter() - start
    return calls / elapsed, calls


# --- search ------------------------------------------------------------------------------


def run_data(n: int, seed: int) -> list[tuple[dict[str, str], dict[str, float]]]:
    rng = random.Random(seed)
    return [
        (
            {f"p{j}": str(rng.randint(1, 100)) for j in range(1, 6)},
            {f"m{j}": rng.random() for j in range(1, 6)},
        )
        for _ in range(n)
    ]


def load_mlflow(db_uri: str, art: Path, experiments: dict[str, int]) -> dict[str, str]:
    """Write the runs as MLflow's ``create_run`` + ``log_batch`` would (same rows, through
    its own SQLAlchemy models), one transaction per experiment."""
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(db_uri, art.as_uri())  # creates the schema
    ids = {}
    now = int(time.time() * 1000)
    for name, n in experiments.items():
        exp_id = store.create_experiment(name)
        ids[name] = exp_id
        location = store.get_experiment(exp_id).artifact_location
        with store.ManagedSessionMaker() as session:
            for i, (params, metrics) in enumerate(run_data(n, n)):
                run_id = uuid.uuid4().hex
                run = SqlRun(
                    name=f"r{i}",
                    artifact_uri=f"{location}/{run_id}/artifacts",
                    run_uuid=run_id,
                    experiment_id=exp_id,
                    source_type="UNKNOWN",
                    source_name="",
                    entry_point_name="",
                    user_id="bench",
                    status="RUNNING",
                    start_time=now + i,
                    end_time=None,
                    deleted_time=None,
                    source_version="",
                    lifecycle_stage="active",
                )
                run.tags = [SqlTag(key="mlflow.runName", value=f"r{i}")]
                session.add(run)
                session.add_all(
                    SqlParam(key=k, value=v, run_uuid=run_id) for k, v in params.items()
                )
                for model in (SqlMetric, SqlLatestMetric):
                    session.add_all(
                        model(key=k, value=v, timestamp=now, step=0, is_nan=False, run_uuid=run_id)
                        for k, v in metrics.items()
                    )
    store.engine.dispose()
    return ids


def load_modelyard(home: Path, experiments: dict[str, int]) -> None:
    """Write the runs as ``start_run`` + ``log_batch`` would (the same rows in modelyard's
    tables: runs, params, metric points and their summaries), one transaction per
    experiment."""
    from sqlalchemy import insert

    import modelyard as my
    from modelyard.core.db import utcnow
    from modelyard.core.ids import new_id
    from modelyard.tracking.store import MetricRow, MetricSummaryRow, ParamRow, RunRow

    now_ms = int(time.time() * 1000)
    with my.connect(home=home) as client:
        db = client.transport.runtime.db  # type: ignore[attr-defined]
        for name, n in experiments.items():
            exp_id = client.tracking.create_experiment(name).id
            runs, params, points, summaries = [], [], [], []
            start = utcnow()
            for i, (run_params, run_metrics) in enumerate(run_data(n, n)):
                run_id = new_id("run")
                runs.append(
                    {
                        "id": run_id,
                        "experiment_id": exp_id,
                        "name": f"r{i}",
                        "status": "RUNNING",
                        "start_time": start + dt.timedelta(milliseconds=i),
                        "created_by": "bench",
                    }
                )
                params += [{"run_id": run_id, "key": k, "value": v} for k, v in run_params.items()]
                for k, v in run_metrics.items():
                    point = {"run_id": run_id, "key": k, "step": 0, "timestamp": now_ms}
                    points.append({**point, "value": v})
                    summaries.append({**point, "latest": v, "min": v, "max": v, "count": 1})
            with db.transaction() as session:
                for table, rows in (
                    (RunRow, runs),
                    (ParamRow, params),
                    (MetricRow, points),
                    (MetricSummaryRow, summaries),
                ):
                    session.execute(insert(table), rows)


def timed(call: Callable[[], list[float]]) -> tuple[list[float], list[float]]:
    """Seconds of each timed call (after one warm-up) and the page's m2 values."""
    page = call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < SEARCH_REPS:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - started > SEARCH_BUDGET_S:
            break
    return times, page


def search_mlflow(client: Any, experiment_id: str) -> list[float]:
    runs = client.search_runs(
        [experiment_id], FILTER, order_by=["metrics.m2 DESC"], max_results=PAGE
    )
    return [r.data.metrics["m2"] for r in runs]


def search_modelyard(client: Any, experiment: str) -> list[float]:
    page = client.tracking.search_runs(
        experiment, FILTER, order_by="metrics.m2 desc", limit=PAGE
    ).runs
    return [r.metrics["m2"].latest for r in page]


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, for a smoke run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    args = parser.parse_args()
    steps = 2_000 if args.quick else 10_000
    sizes = [200, 1_000] if args.quick else [1_000, 10_000]
    long_points = 200_000 if args.quick else 1_000_000
    experiments = {f"search-{n}": n for n in sizes}

    os.environ.pop("MODELYARD_URL", None)
    from mlflow.tracking import MlflowClient

    import modelyard as my

    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
        "points": steps * len(KEYS),
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        root = Path(tmp)
        art = root / "mlflow-art"
        art.mkdir()
        db_uri = f"sqlite:///{root / 'mlflow.db'}"
        server_home = root / "modelyard-server"

        t0 = time.perf_counter()
        mlflow_ids = load_mlflow(db_uri, art, experiments)
        load_modelyard(server_home, experiments)
        results["load_seconds"] = time.perf_counter() - t0
        print(f"loaded {sum(sizes)} runs into each system in {results['load_seconds']:.0f} s")

        mlflow_port, my_port = free_port(), free_port()
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        my_url = f"http://127.0.0.1:{my_port}"
        mlflow_cmd = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            db_uri,
            "--default-artifact-root",
            str(art),
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
        ]
        my_cmd = [
            str(BIN / "modelyard"),
            "up",
            "--home",
            str(server_home),
            "--port",
            str(my_port),
            "--log-level",
            "warning",
        ]
        with (
            server(mlflow_cmd, f"{mlflow_url}/health", "mlflow server", root / "mlflow.log"),
            server(my_cmd, f"{my_url}/healthz", "modelyard up", root / "modelyard.log"),
        ):
            mlflow = MlflowClient(tracking_uri=mlflow_url)
            ingest_exp = mlflow.create_experiment("ingest")

            with my.connect(home=root / "modelyard-embedded") as embedded:
                ingest_modelyard(embedded, steps // 10)  # warm-up (imports, tables)
                results["embedded_pts_s"] = ingest_modelyard(embedded, steps)
                print(f"  modelyard embedded   {results['embedded_pts_s']:>10,.0f} points/s")
                results["long_history"] = long_history(embedded, long_points)
            # Embedded search reads the server's database from this process (SQLite WAL).
            with my.connect(home=server_home) as embedded:
                emb_search = {
                    n: timed(lambda n=n: search_modelyard(embedded, f"search-{n}"))[0]
                    for n in sizes
                }
            with my.connect(my_url) as remote:
                ingest_modelyard(remote, steps // 10)
                results["remote_pts_s"] = ingest_modelyard(remote, steps)
                print(f"  modelyard remote     {results['remote_pts_s']:>10,.0f} points/s")
                ingest_mlflow_batch(mlflow, ingest_exp, steps // 10)
                results["mlflow_batch_pts_s"] = ingest_mlflow_batch(mlflow, ingest_exp, steps)
                print(f"  mlflow log_batch     {results['mlflow_batch_pts_s']:>10,.0f} points/s")
                single, calls = ingest_mlflow_single(mlflow, ingest_exp)
                results["mlflow_single_pts_s"], results["mlflow_single_calls"] = single, calls
                print(f"  mlflow log_metric    {single:>10,.1f} points/s ({calls} calls)")

                search: dict[str, Any] = {}
                for n in sizes:
                    my_times, my_page = timed(lambda n=n: search_modelyard(remote, f"search-{n}"))
                    ml_times, ml_page = timed(
                        lambda n=n: search_mlflow(mlflow, mlflow_ids[f"search-{n}"])
                    )
                    if [round(v, 12) for v in my_page] != [round(v, 12) for v in ml_page]:
                        raise SystemExit(f"search over {n} runs: the two pages differ")
                    search[str(n)] = {
                        "modelyard_remote_p50_ms": statistics.median(my_times) * 1000,
                        "modelyard_embedded_p50_ms": statistics.median(emb_search[n]) * 1000,
                        "mlflow_p50_ms": statistics.median(ml_times) * 1000,
                        "modelyard_calls": len(my_times),
                        "mlflow_calls": len(ml_times),
                        "page": len(my_page),
                    }
                    print(
                        f"  search {n:>6} runs: modelyard "
                        f"{search[str(n)]['modelyard_remote_p50_ms']:.1f} ms, "
                        f"mlflow {search[str(n)]['mlflow_p50_ms']:.1f} ms"
                    )
                results["search"] = search
    results["load_avg_end"] = os.getloadavg()
    report(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.json}")


def report(r: dict[str, Any]) -> None:
    batch = r["mlflow_batch_pts_s"]
    print(
        f"\ntracking, {r['points']:,} points (10 keys); {r['cpus']} CPUs; load average "
        f"{r['load_avg_start'][0]:.1f} -> {r['load_avg_end'][0]:.1f}"
    )
    print(f"  {'ingestion':<34} {'points/s':>12} {'vs mlflow log_batch':>22}")
    rows = [
        ("modelyard embedded", r["embedded_pts_s"]),
        ("modelyard remote (HTTP)", r["remote_pts_s"]),
        ("mlflow log_batch (1,000/call)", batch),
        ("mlflow log_metric (1/call)", r["mlflow_single_pts_s"]),
    ]
    for label, rate in rows:
        print(f"  {label:<34} {rate:>12,.0f} {rate / batch:>21.2f}x")
    remote_ratio = r["remote_pts_s"] / batch
    print(
        f"  goals: remote >= {INGEST_GOAL_RATIO:.0f}x mlflow log_batch: "
        f"{'ok' if remote_ratio >= INGEST_GOAL_RATIO else 'BELOW GOAL'}; embedded >= "
        f"{EMBEDDED_GOAL:,.0f}/s: {'ok' if r['embedded_pts_s'] >= EMBEDDED_GOAL else 'BELOW GOAL'}"
    )
    long = r["long_history"]
    print(
        f"  history of {long['points']:,} points, max_points={long['max_points']}: p50 "
        f"{long['tiles_p50_ms']:.1f} ms from tiles ({long['tiles_returned']} points), "
        f"{long['points_p50_ms']:.1f} ms from the points ({long['points_returned']} points)"
    )
    print(f"\n  search ({FILTER}, order by metrics.m2 desc, first {PAGE}); p50")
    print(
        f"  {'runs':>8} {'mlflow':>12} {'modelyard remote':>18} {'ratio':>8} "
        f"{'modelyard embedded':>20}"
    )
    for n, s in r["search"].items():
        ratio = s["mlflow_p50_ms"] / s["modelyard_remote_p50_ms"]
        s["ratio"] = ratio
        verdict = "ok" if ratio >= SEARCH_GOAL_RATIO else "BELOW GOAL"
        print(
            f"  {int(n):>8,} {s['mlflow_p50_ms']:>9.1f} ms "
            f"{s['modelyard_remote_p50_ms']:>15.1f} ms {ratio:>7.1f}x "
            f"{s['modelyard_embedded_p50_ms']:>17.1f} ms  ({verdict})"
        )


if __name__ == "__main__":
    main()
