"""The batch-transform worker alone beside the in-process peer, in one warm process.

    .venv/bin/python -m benchmarks.bench_transform_worker [--runs 3] [--models sklearn,xgboost]
                                                          [--batch-size 250000]

Uses the data and saved models ``benchmarks.bench_transform`` made under
``benchmarks/.data/transform-1000000x20/`` (run it once first). Everything a warm job
process has is imported first (NumPy, PyArrow, scikit-learn, XGBoost, ONNX Runtime, the
worker module), then per model, alternating ``--runs`` times:

- the peer: the model loaded once, ``pq.read_table`` of the folder, a float32 matrix, one
  ``model.predict`` call (as ``bench_transform.peer``);
- the worker: ``modelyard.transform.worker.transform(config, paths)`` with the model's
  artifact (a ``.tar.gz`` of the saved folder) as its model channel and the Parquet folder
  as its data channel: unpacking, loading, choosing the engine, reading, predicting and
  writing the Parquet part files, as the job's process does after its start. The cache of
  verified ONNX models starts empty, so a model's first run converts and later ones reuse.

Prints each run's seconds, the best of each and the ratio peer / worker (goal >= 1), and
checks that the worker's predictions equal the peer's exactly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime  # type: ignore[import-untyped]  # noqa: F401  (as in a warm job process)
import pyarrow as pa
import pyarrow.parquet as pq
import sklearn.ensemble  # noqa: F401
import xgboost  # noqa: F401

from benchmarks.bench_transform import DATA_DIR, peer
from modelyard.flavors import load_model
from modelyard.transform import fastpath, worker
from modelyard.transform.config import WorkerConfig


def config(batch_size: int) -> WorkerConfig:
    """What the service stores for ``my.Transformer(model, batch_size=...)`` on Parquet."""
    return WorkerConfig(
        model="bench",
        model_version=1,
        model_version_id="mv-bench",
        model_filename="model.tar.gz",
        dataset="features",
        dataset_version=1,
        dataset_version_id="dsv-bench",
        format="parquet",
        split_type="Record",
        batch_size=batch_size,
        max_concurrent=1,
        workers=1,
        join_source="None",
        input_filter=None,
        output_filter=None,
        probabilities=False,
        accept="parquet",
        on_error="continue",
        max_errors=None,
        output_dataset="features-predictions",
    )


def job_paths(root: Path, data: Path, saved: Path) -> worker.Paths:
    """A job's channels: the model artifact packed as the registry keeps it."""
    model = root / "input" / "model"
    model.mkdir(parents=True)
    with tarfile.open(model / "model.tar.gz", "w:gz") as tar:
        for item in sorted(saved.iterdir()):
            tar.add(item, arcname=item.name)
    return worker.Paths(
        data=data, model=model, output=root / "output", scratch=root / "scratch" / "transform"
    )


def run_worker(cfg: WorkerConfig, paths: worker.Paths) -> tuple[float, float, np.ndarray]:
    shutil.rmtree(paths.output, ignore_errors=True)
    paths.output.mkdir(parents=True)
    started, cpu = time.perf_counter(), time.process_time()
    worker.transform(cfg, paths)
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    parts = sorted((paths.output / "data").glob("part-*.parquet"))
    got = pa.concat_tables([pq.read_table(p) for p in parts])["prediction"].to_numpy()
    return seconds, cpu_s, got


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=250_000)
    parser.add_argument("--models", default="sklearn,xgboost")
    parser.add_argument("--data", default=str(DATA_DIR / "transform-1000000x20"))
    args = parser.parse_args()
    folder = Path(args.data)
    os.environ.setdefault("SM_NUM_CPUS", str(os.cpu_count() or 1))
    cfg = config(args.batch_size)
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-transform-worker-") as tmp:
        # An empty cache of verified ONNX models: the first run of a model converts.
        os.environ[fastpath.CACHE_ENV] = str(Path(tmp) / "onnx-cache")
        for kind in args.models.split(","):
            saved = folder / f"model-{kind}"
            model: Any = load_model(saved)
            paths = job_paths(Path(tmp) / kind, folder / "data", saved)
            peer_s: list[float] = []
            worker_s: list[float] = []
            for run in range(args.runs):
                p_s, p_cpu, expected = peer(folder, model)
                w_s, w_cpu, got = run_worker(cfg, paths)
                peer_s.append(p_s)
                worker_s.append(w_s)
                same = np.array_equal(got, expected)
                failed |= not same
                print(
                    f"  {kind} run {run + 1}: peer {p_s:.2f} s (CPU {p_cpu:.2f} s), worker "
                    f"{w_s:.2f} s (CPU {w_cpu:.2f} s); equal: {same}; "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            print(
                f"{kind}: peer best {min(peer_s):.2f} s, worker best {min(worker_s):.2f} s; "
                f"ratio peer/worker {min(peer_s) / min(worker_s):.2f} (median "
                f"{statistics.median(peer_s) / statistics.median(worker_s):.2f}; goal >= 1)",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
