"""Built-in XGBoost beside a plain ``xgboost.train`` script: wall time of the whole job.

    .venv/bin/python -m benchmarks.bench_xgboost [--rows 1000000 --features 50 --rounds 100]
                                                 [--runs 3]

Generates ``benchmarks/.data/xgb-<rows>x<features>.parquet`` once (float32 features, a
0/1 label from a noisy linear rule), reads it once so both contenders start from the page
cache, then alternates, ``--runs`` times each (default 3):

- modelyard: ``python -m modelyard.algorithms.xgboost`` in a fresh ``/opt/ml``-like job
  directory whose ``train`` channel holds the Parquet file: the full entry point
  (hyperparameter parsing, channel sniffing and reading, checks, QuantileDMatrix,
  ``xgboost.train``, the ``train:logloss`` metric line, saving ``model.ubj``,
  ``signature.json`` and ``metadata.json``);
- the peer: a plain script in its own ``python`` process that reads the same file with
  ``pyarrow.parquet``, builds a ``QuantileDMatrix`` from the Arrow table, calls
  ``xgboost.train`` with the identical ``params`` (made by the entry point's own
  ``booster_params``) and saves ``model.ubj``.

Both are timed from process start to exit (interpreter start-up and imports included).
Goal: modelyard / peer <= 1.05 on the best wall time. Both models are then checked to
predict the same on a sample of rows.

Where the environment forbids writing bytecode beside the sources
(PYTHONDONTWRITEBYTECODE), both children share a bytecode cache under
``benchmarks/.data/pycache`` so neither recompiles its imports on every run, as an
installed package (whose bytecode pip compiles) would not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb

from modelyard.algorithms._schemas import XGBoostHyperparameters
from modelyard.algorithms.xgboost import booster_params

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "benchmarks" / ".data"
RUNS = 3
RATIO_GOAL = 1.05

PEER_SCRIPT = """
import json, sys
import pyarrow.parquet as pq
import xgboost as xgb

path, model_path, params_json, rounds = sys.argv[1:5]
params = json.loads(params_json)
table = pq.read_table(path)
label = table.column("label").to_numpy()
dtrain = xgb.QuantileDMatrix(
    table.drop_columns(["label"]), label=label, nthread=params["nthread"],
    max_bin=params["max_bin"],
)
booster = xgb.train(params, dtrain, num_boost_round=int(rounds))
booster.save_model(model_path)
"""


def make_data(rows: int, features: int) -> Path:
    """The Parquet input, created once per shape; returns its path."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"xgb-{rows}x{features}.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, features), dtype=np.float32)
    weights = rng.standard_normal(features).astype(np.float32)
    score = x @ weights + rng.standard_normal(rows, dtype=np.float32) * 2.0
    columns = {"label": pa.array((score > 0).astype(np.int8))}
    columns.update({f"f{j}": pa.array(x[:, j]) for j in range(features)})
    tmp = path.with_suffix(".partial")
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, path)
    return path


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as handle:
        while handle.read(8 << 20):
            pass


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    if sys.flags.dont_write_bytecode or env.get("PYTHONDONTWRITEBYTECODE"):
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(DATA_DIR / "pycache")
    env.update(extra)
    return env


def job_dir(data: Path, root: Path) -> dict[str, str]:
    """A fresh job directory whose train channel links to ``data``; its SM_* variables."""
    shutil.rmtree(root, ignore_errors=True)
    channel = root / "input" / "data" / "train"
    channel.mkdir(parents=True)
    os.link(data, channel / "part-0")
    return {
        "SM_INPUT_DIR": str(root / "input"),
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
    }


def timed(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Wall time of ``cmd`` from spawn to exit, and its CPU time (user + system).

    CPU time is printed beside wall time because a shared machine's load moves wall
    times; extra work in one contender shows in its CPU time whatever the load.
    """
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd[:3]} failed with status {code}; see {log}")
    return seconds, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--runs", type=int, default=RUNS, help="runs of each, alternating")
    args = parser.parse_args()
    if args.rows < 2 or args.features < 1 or args.rounds < 1 or args.runs < 1:
        parser.error("--rows >= 2, --features >= 1, --rounds >= 1 and --runs >= 1")

    data = make_data(args.rows, args.features)
    warm(data)
    load_before = os.getloadavg()[0]
    hps = {"objective": "binary:logistic", "num_round": args.rounds, "max_depth": 6, "eta": 0.3}
    params = booster_params(XGBoostHyperparameters.model_validate(hps), None, os.cpu_count() or 1)
    job_root = DATA_DIR / "xgb-job"
    peer_model = DATA_DIR / "xgb-peer-model.ubj"
    ours: list[tuple[float, float]] = []
    peer: list[tuple[float, float]] = []
    for _ in range(args.runs):
        sm = job_dir(data, job_root)
        env = child_env({**sm, "SM_HPS": json.dumps({k: str(v) for k, v in hps.items()})})
        cmd = [sys.executable, "-m", "modelyard.algorithms.xgboost"]
        ours.append(timed(cmd, env, DATA_DIR / "xgb-modelyard.log"))
        cmd = [sys.executable, "-c", PEER_SCRIPT, str(data), str(peer_model)]
        cmd += [json.dumps(params), str(args.rounds)]
        peer.append(timed(cmd, child_env({}), DATA_DIR / "xgb-peer.log"))

    sample = pq.read_table(data).slice(0, 10_000).drop_columns(["label"])
    predictions = []
    for model_path in (job_root / "model" / "model.ubj", peer_model):
        booster = xgb.Booster()
        booster.load_model(model_path)
        predictions.append(booster.inplace_predict(sample))
    same = bool(np.allclose(predictions[0], predictions[1], rtol=1e-6, atol=1e-7))

    wall = {name: [w for w, _ in runs] for name, runs in (("ours", ours), ("peer", peer))}
    cpu = {name: [c for _, c in runs] for name, runs in (("ours", ours), ("peer", peer))}
    ratio = min(wall["ours"]) / min(wall["peer"])
    verdict = "ok" if ratio <= RATIO_GOAL else "ABOVE GOAL"
    print(
        f"xgboost training job: {args.rows} rows x {args.features} features, "
        f"{args.rounds} rounds, binary:logistic, hist, {os.cpu_count()} CPUs, best of {args.runs}"
    )
    for label, name in (("modelyard entry point", "ours"), ("plain xgboost.train script", "peer")):
        print(
            f"  {label:<28} wall best {min(wall[name]):7.2f} s, median "
            f"{statistics.median(wall[name]):7.2f} s ({', '.join(f'{t:.2f}' for t in wall[name])});"
            f" CPU best {min(cpu[name]):7.2f} s"
        )
    median_ratio = statistics.median(wall["ours"]) / statistics.median(wall["peer"])
    print(f"  ratio modelyard/plain, best wall   {ratio:6.3f}   (goal <= {RATIO_GOAL}: {verdict})")
    print(f"  ratio modelyard/plain, median wall {median_ratio:6.3f}")
    print(f"  ratio modelyard/plain, best CPU    {min(cpu['ours']) / min(cpu['peer']):6.3f}")
    print(f"  same predictions on 10,000 rows: {'yes' if same else 'NO'}")
    # Other work on the machine moves wall times (not CPU times): say how busy it was.
    print(
        f"  1-minute load average before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs (wall ratios are unreliable above the CPU count)"
    )


if __name__ == "__main__":
    main()
