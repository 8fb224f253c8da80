"""CLI start-up beside MLflow's: ``--help`` and listing through a server.

    .venv/bin/python -m benchmarks.bench_cli [--reps 7] [--json PATH]

Every figure is one fresh process, started as a user starts it (the console scripts
``modelyard`` and ``mlflow`` of this environment), measured from spawn to exit: wall
time, CPU time (user + system) and peak RSS from ``wait4``. The median of ``--reps``
runs after one warm-up each (the page cache is warm for both); the JSON also keeps the
least wall and CPU time of the runs, the steadier figures on a shared machine. This process imports
neither package (the servers are seeded by subprocesses), because a child's peak RSS
as the kernel counts it starts at its parent's size when it was forked.

Pairs, both against servers on this machine started for the run (``modelyard up`` and
``mlflow server --backend-store-uri sqlite:///… --workers 1``), each holding the same 5
experiments of 20 runs:

- ``modelyard --help`` / ``mlflow --help``;
- ``modelyard experiments list`` / ``mlflow experiments search`` (``MODELYARD_URL`` /
  ``MLFLOW_TRACKING_URI``);
- ``modelyard runs list -e exp-0`` / ``mlflow runs list --experiment-id <id>``;
- ``modelyard models list`` and ``modelyard jobs list`` (MLflow's CLI lists neither
  registered models nor jobs: their ratio is against ``mlflow experiments search``);
- ``modelyard runs describe RUN`` / ``mlflow runs describe --run-id RUN``;
- ``modelyard endpoints list``, ``datasets list``, ``datasets show NAME`` and
  ``models describe NAME``, which MLflow's CLI has no counterpart for (no MLflow figure).

Goal (CLI issue): ``--help`` and a remote list in under 0.3 s and under 60 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Light: bench_tracking imports modelyard and mlflow only inside its functions.
from benchmarks.bench_tracking import free_port, server

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_JSON = REPO / "benchmarks" / ".data" / "bench_cli.json"
GOAL_S = 0.3
GOAL_MB = 60.0
EXPERIMENTS = 5
RUNS = 20


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one run of ``cmd``, which must succeed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 gives this child's own rusage (not the sum over all children so far).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    if proc.returncode != 0 or not out.strip():
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def timed(cmd: list[str], env: dict[str, str], reps: int) -> dict[str, float]:
    measure(cmd, env)  # warm-up
    runs = [measure(cmd, env) for _ in range(reps)]
    return {
        "wall_s": statistics.median(r[0] for r in runs),
        "cpu_s": statistics.median(r[1] for r in runs),
        "rss_mb": statistics.median(r[2] for r in runs),
        # The least of the runs: what the command costs when nothing else gets in its way
        # (the steadier figure on a shared machine).
        "wall_min_s": min(r[0] for r in runs),
        "cpu_min_s": min(r[1] for r in runs),
    }


def seed(which: str, url: str) -> str:
    """Seed a server in a subprocess (keeps this process small); returns what it prints."""
    code = f"from benchmarks.bench_cli import seed_{which}; print(seed_{which}({url!r}))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"seeding {which} failed: {proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


def seed_modelyard(url: str) -> str:
    """Runs, a model and a small dataset; returns the first run's id."""
    import modelyard as my

    first = ""
    with my.connect(url) as c, tempfile.TemporaryDirectory() as tmp:
        for e in range(EXPERIMENTS):
            for r in range(RUNS):
                run = c.tracking.create_run(
                    f"exp-{e}", name=f"run-{r}", params={"lr": r}, capture=False
                )
                first = first or run.id
                c.tracking.log_batch(run.id, metrics=[{"key": "auc", "value": r / RUNS, "step": 0}])
                c.tracking.end_run(run.id)
        c.models.create("demo")
        data = Path(tmp) / "demo.csv"
        data.write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(100)))
        c.datasets.register("demo", data)
    return first


def seed_mlflow(url: str) -> str:
    from mlflow.entities import Metric, Param

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    first = first_run = ""
    for e in range(EXPERIMENTS):
        exp_id = client.create_experiment(f"exp-{e}")
        first = first or exp_id
        for r in range(RUNS):
            run = client.create_run(exp_id, run_name=f"run-{r}")
            first_run = first_run or run.info.run_id
            client.log_batch(
                run.info.run_id,
                metrics=[Metric("auc", r / RUNS, 0, 0)],
                params=[Param("lr", str(r))],
            )
            client.set_terminated(run.info.run_id)
    client.create_registered_model("demo")
    return f"{first} {first_run}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    results: dict[str, Any] = {"reps": args.reps, "load_start": os.getloadavg()[0]}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "MLFLOW_"))}
    # As installed, with bytecode: an install compiles it, a checkout gets it on the warm-up
    # run (without it every start recompiles modelyard's ~60 modules, ~0.1-0.2 s).
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        root = Path(tmp)
        my_port, mlflow_port = free_port(), free_port()
        my_url, mlflow_url = f"http://127.0.0.1:{my_port}", f"http://127.0.0.1:{mlflow_port}"
        (root / "mlflow-art").mkdir()
        my_cmd = [str(BIN / "modelyard"), "up", "--home", str(root / "my-server")]
        my_cmd += ["--port", str(my_port), "--log-level", "warning"]
        mlflow_cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri"]
        mlflow_cmd += [f"sqlite:///{root / 'mlflow.db'}", "--default-artifact-root"]
        mlflow_cmd += [str(root / "mlflow-art"), "--host", "127.0.0.1"]
        mlflow_cmd += ["--port", str(mlflow_port), "--workers", "1"]
        with (
            server(my_cmd, f"{my_url}/healthz", "modelyard up", root / "modelyard.log"),
            server(mlflow_cmd, f"{mlflow_url}/health", "mlflow server", root / "mlflow.log"),
        ):
            my_run = seed("modelyard", my_url)
            exp_id, mlflow_run = seed("mlflow", mlflow_url).split()
            my_env = {**base_env, "MODELYARD_URL": my_url, "MODELYARD_HOME": str(root / "h")}
            mlflow_env = {**base_env, "MLFLOW_TRACKING_URI": mlflow_url}
            my, mlflow = str(BIN / "modelyard"), str(BIN / "mlflow")
            pairs: list[tuple[str, list[str]]] = [
                ("--help", [my, "--help"]),
                ("list experiments", [my, "experiments", "list"]),
                ("list runs", [my, "runs", "list", "-e", "exp-0"]),
                ("list models", [my, "models", "list"]),
                ("list jobs", [my, "jobs", "list"]),
                ("describe run", [my, "runs", "describe", my_run]),
                ("list endpoints", [my, "endpoints", "list"]),
                ("list datasets", [my, "datasets", "list"]),
                ("show dataset", [my, "datasets", "show", "demo"]),
                ("describe model", [my, "models", "describe", "demo"]),
            ]
            search = [mlflow, "experiments", "search"]
            # MLflow's command beside each of ours; None where its CLI has no counterpart.
            peers: dict[str, list[str] | None] = {
                "--help": [mlflow, "--help"],
                "list experiments": search,
                "list runs": [mlflow, "runs", "list", "--experiment-id", exp_id],
                "list models": search,
                "list jobs": search,
                "describe run": [mlflow, "runs", "describe", "--run-id", mlflow_run],
            }
            header = f"{'':18} {'modelyard wall/CPU/RSS':>26}   {'mlflow wall/CPU/RSS':>26}"
            print(header + "   ratio (wall)   goal")
            for label, mine in pairs:
                peer_cmd = peers.get(label)
                a = timed(mine, my_env, args.reps)
                met = a["wall_s"] < GOAL_S and a["rss_mb"] < GOAL_MB
                results[label] = {"modelyard": a, "goal_met": met}
                theirs = f"{'-':>26}   {'':14}"
                if peer_cmd is not None:
                    b = timed(peer_cmd, mlflow_env, args.reps)
                    ratio = b["wall_s"] / a["wall_s"]
                    results[label].update(
                        mlflow=b, mlflow_cmd=" ".join(["mlflow", *peer_cmd[1:]]), ratio=ratio
                    )
                    theirs = (
                        f"{b['wall_s']:7.3f} s {b['cpu_s']:6.3f} s {b['rss_mb']:6.1f} MB"
                        f"   {ratio:6.1f}x faster"
                    )
                print(
                    f"{label:18} {a['wall_s']:7.3f} s {a['cpu_s']:6.3f} s {a['rss_mb']:6.1f} MB"
                    f"   {theirs}   {'met' if met else 'MISSED'}"
                )
    results["load_end"] = os.getloadavg()[0]
    print(f"load average at end: {results['load_end']:.1f}")
    print(f"goal: modelyard under {GOAL_S} s and {GOAL_MB:.0f} MB per command")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
