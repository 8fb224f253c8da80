"""The web console beside MLflow's UI, in the same headless Chromium, on the same data.

    .venv/bin/python -m benchmarks.bench_console [--quick] [--json PATH]

Data (loaded through each system's store layer before the servers start, as in
``bench_tracking``): an experiment of 10,000 runs with 5 params and 5 metrics each
(``--quick``: 1,000), and one run with a metric of 1,000,000 points (``--quick``: 100,000).
Servers: ``modelyard up`` and ``mlflow server``, each on SQLite, as subprocesses.

Timed, in Debian's Chromium driven by Playwright, p50 of 5 loads after one warm-up, each
in a fresh browser context (an empty cache, as a first visit):

- runs page: from navigation until the runs table shows its first page of runs (the
  newest run's name is on screen);
- metric chart: from navigation to the run page until the chart of the long metric is
  drawn (modelyard: the chart's canvas holds the downsampled points; MLflow: its chart
  of that metric is on screen).

Goals (console issue): the runs page interactive in under 1 s with 10,000 runs; a metric of
1,000,000 points charted in under 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.bench_tracking import (
    BIN,
    free_port,
    load_mlflow,
    load_modelyard,
    wait_http,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO / "benchmarks" / ".data" / "bench_console.json"
EXPERIMENT = "console-bench"
LONG_KEY = "loss"
REPS = 5
GOAL_S = 1.0


def long_values(points: int) -> list[float]:
    return [1.0 / (1 + s * 1e-4) for s in range(points)]


def load_long_metric_modelyard(home: Path, points: int) -> str:
    """One run with ``points`` steps of LONG_KEY, logged through the SDK in 10,000-point
    column batches (what ``run.log_metric`` sends)."""
    import modelyard as my
    from modelyard.tracking.schemas import LogBatch, MetricColumns

    values = long_values(points)
    with my.connect(home=home) as client:
        run = client.tracking.create_run("console-long", name="long")
        batch = 10_000
        for start in range(0, points, batch):
            chunk = values[start : start + batch]
            columns = MetricColumns(
                keys=[LONG_KEY],
                key_index=[0] * len(chunk),
                values=chunk,
                steps=list(range(start, start + len(chunk))),
                timestamps=[0] * len(chunk),
            )
            client.transport.call("tracking.log_batch", LogBatch(run_id=run.id, points=columns))
        return run.id


def load_long_metric_mlflow(db_uri: str, art: Path, points: int) -> tuple[str, str]:
    """The same metric in MLflow's tables (the rows its ``log_batch`` writes), in bulk."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import insert

    store = SqlAlchemyStore(db_uri, art.as_uri())
    exp_id = store.create_experiment("console-long")
    run_id = store.create_run(exp_id, "bench", int(time.time() * 1000), [], "long").info.run_id
    values = long_values(points)
    rows = [
        {
            "key": LONG_KEY,
            "value": v,
            "timestamp": 0,
            "step": s,
            "is_nan": False,
            "run_uuid": run_id,
        }
        for s, v in enumerate(values)
    ]
    with store.ManagedSessionMaker() as session:
        session.execute(insert(SqlMetric), rows)
        session.execute(insert(SqlLatestMetric), [rows[-1]])
    store.engine.dispose()
    return exp_id, run_id


@contextlib.contextmanager
def server(cmd: list[str], health: str, what: str, log: Path) -> Iterator[None]:
    """A server subprocess, up once ``health`` answers (a busy machine gets 10 minutes)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
        try:
            wait_http(health, proc, what, timeout=600)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def timed(browser: Any, url: str, ready: Callable[[Any], None]) -> list[float]:
    """Seconds from navigation until ``ready(page)`` returns, for REPS loads after a warm-up."""
    out = []
    for i in range(REPS + 1):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        started = time.perf_counter()
        page.goto(url)
        ready(page)
        elapsed = time.perf_counter() - started
        context.close()
        if i:
            out.append(elapsed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    n_runs = 1_000 if args.quick else 10_000
    n_points = 100_000 if args.quick else 1_000_000
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is not installed: run 'make browser'")
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    my_home, ml_dir = work / "modelyard", work / "mlflow"
    ml_dir.mkdir()
    ml_db = f"sqlite:///{ml_dir / 'mlflow.db'}"
    print(f"loading {n_runs} runs and a {n_points}-point metric into both …", flush=True)
    t0 = time.perf_counter()
    load_modelyard(my_home, {EXPERIMENT: n_runs})
    my_long = load_long_metric_modelyard(my_home, n_points)
    ml_ids = load_mlflow(ml_db, ml_dir / "artifacts", {EXPERIMENT: n_runs})
    ml_long_exp, ml_long = load_long_metric_mlflow(ml_db, ml_dir / "artifacts", n_points)
    print(f"loaded in {time.perf_counter() - t0:.0f} s", flush=True)

    newest = f"r{n_runs - 1}"
    my_port, ml_port = free_port(), free_port()
    my_url, ml_url = f"http://127.0.0.1:{my_port}", f"http://127.0.0.1:{ml_port}"
    my_cmd = [str(BIN / "modelyard"), "up", "--home", str(my_home), "--port", str(my_port)]
    ml_cmd = [
        *(str(BIN / "mlflow"), "server", "--backend-store-uri", ml_db),
        *("--default-artifact-root", (ml_dir / "artifacts").as_uri()),
        *("--host", "127.0.0.1", "--port", str(ml_port), "--workers", "1"),
    ]
    results: dict[str, Any] = {"runs": n_runs, "points": n_points}
    with (
        server(my_cmd, my_url + "/healthz", "modelyard up", work / "modelyard.log"),
        server(ml_cmd, ml_url + "/health", "mlflow server", work / "mlflow.log"),
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])

        def my_runs_ready(page: Any) -> None:
            page.wait_for_selector(f"table.runs a:text-is('{newest}')", timeout=60_000)

        def ml_runs_ready(page: Any) -> None:
            page.get_by_text(newest, exact=True).first.wait_for(timeout=60_000)

        def my_chart_ready(page: Any) -> None:
            page.wait_for_selector("figure.chart[data-points] canvas", timeout=60_000)

        def ml_chart_ready(page: Any) -> None:
            page.wait_for_selector(".js-plotly-plot .scatterlayer path.js-line", timeout=60_000)

        cases = {
            "runs_page": {
                "modelyard": (f"{my_url}/#/experiments/{EXPERIMENT}", my_runs_ready),
                "mlflow": (f"{ml_url}/#/experiments/{ml_ids[EXPERIMENT]}/runs", ml_runs_ready),
            },
            "metric_chart": {
                "modelyard": (f"{my_url}/#/runs/{my_long}", my_chart_ready),
                "mlflow": (
                    f"{ml_url}/#/experiments/{ml_long_exp}/runs/{ml_long}/model-metrics",
                    ml_chart_ready,
                ),
            },
        }
        for case, sides in cases.items():
            results[case] = {}
            for side, (url, ready) in sides.items():
                try:
                    seconds = timed(browser, url, ready)
                except Exception as exc:  # a peer whose page never got ready is reported
                    print(f"{case} {side}: not measured ({type(exc).__name__}: {exc})")
                    continue
                results[case][side] = {"p50_s": statistics.median(seconds), "all_s": seconds}
        browser.close()
    report(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def report(r: dict[str, Any]) -> None:
    print(f"\nconsole, {r['runs']} runs / {r['points']}-point metric (p50 of {REPS} cold loads)")
    for case in ("runs_page", "metric_chart"):
        my, ml = r[case].get("modelyard"), r[case].get("mlflow")
        line = f"  {case:13s} modelyard {my['p50_s']:.3f} s" if my else f"  {case:13s} modelyard -"
        line += f" | MLflow UI {ml['p50_s']:.3f} s" if ml else " | MLflow UI not measured"
        if my and ml:
            line += f" | ratio {ml['p50_s'] / my['p50_s']:.1f}x"
        if my:
            line += f" | goal < {GOAL_S:.0f} s: {'met' if my['p50_s'] < GOAL_S else 'NOT met'}"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
