"""Test kit for the built-in algorithms: job directories, runs, generated data.

``JobDir`` lays out ``input/config``, ``input/data/<channel>``, ``model``,
``output/data`` and ``checkpoints`` under a temporary folder; ``job.run(name, hps)`` starts
``python -m modelyard.algorithms.<name>`` as a real subprocess with the ``SM_*`` variables,
hyperparameters in ``SM_HPS`` and ``hyperparameters.json`` (as strings, like SageMaker)
and, optionally, as ``--name value`` arguments, and parses its metric lines.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

METRIC_LINE = re.compile(r"^#metric name=(\S+) value=(\S+) step=(-?\d+)$")
RUN_TIMEOUT_S = 240


@dataclass
class Result:
    """What a finished algorithm process left behind."""

    returncode: int
    stdout: str
    stderr: str
    failure: str | None
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def last(self, name: str) -> float:
        """The last value printed for metric ``name``."""
        return self.metrics[name][-1][1]

    def assert_trained(self, job: JobDir, model_files: tuple[str, ...]) -> dict[str, Any]:
        """Exit 0, no failure file, model files + signature + metadata; returns metadata."""
        assert self.returncode == 0, self.stderr[-4000:]
        assert self.failure is None
        for name in (*model_files, "signature.json", "metadata.json"):
            assert (job.model / name).is_file(), f"{name} missing from the model dir"
        metadata: dict[str, Any] = json.loads((job.model / "metadata.json").read_text())
        assert metadata["model_files"] == list(model_files)
        for name, points in self.metrics.items():
            assert metadata["metrics"][name] == pytest.approx(points[-1][1], nan_ok=True)
        return metadata

    def assert_failed(self, *fragments: str) -> None:
        """Exit 1 with a one-paragraph failure message, also on stderr, with every fragment."""
        assert self.returncode == 1, (self.returncode, self.stderr[-4000:])
        assert self.failure is not None
        assert "\n" not in self.failure.strip(), "the failure message is one paragraph"
        assert self.failure.strip() in self.stderr
        for fragment in fragments:
            assert fragment in self.failure, (fragment, self.failure)


class JobDir:
    """One job's working directory, laid out like SageMaker's ``/opt/ml``."""

    def __init__(self, root: Path, pycache: Path | None = None) -> None:
        self.root = root
        self.pycache = pycache
        self.config = root / "input" / "config"
        self.data = root / "input" / "data"
        self.model = root / "model"
        self.output = root / "output"
        self.output_data = self.output / "data"
        for folder in (self.config, self.data, self.model, self.output_data, root / "checkpoints"):
            folder.mkdir(parents=True, exist_ok=True)

    def channel(self, name: str) -> Path:
        folder = self.data / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write(
        self,
        name: str,
        columns: Mapping[str, Any],
        *,
        fmt: str = "csv",
        filename: str = "part-0",
        header: bool = True,
    ) -> Path:
        """Write ``columns`` into channel ``name`` as csv / parquet / jsonl (no extension)."""
        table = pa.table({key: np.asarray(value) for key, value in columns.items()})
        path = self.channel(name) / filename
        if fmt == "parquet":
            pq.write_table(table, path)
        elif fmt == "jsonl":
            with open(path, "w", encoding="utf-8") as handle:
                for row in table.to_pylist():
                    handle.write(json.dumps(row) + "\n")
        else:
            options = pacsv.WriteOptions(include_header=header)
            pacsv.write_csv(table, path, write_options=options)
        return path

    def environ(self, hyperparameters: Mapping[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
        if self.pycache is not None:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        hps = {key: str(value) for key, value in hyperparameters.items()}
        (self.config / "hyperparameters.json").write_text(json.dumps(hps), encoding="utf-8")
        channels = sorted(p.name for p in self.data.iterdir() if p.is_dir())
        env.update(
            {
                "SM_HPS": json.dumps(hps),
                "SM_MODEL_DIR": str(self.model),
                "SM_INPUT_DIR": str(self.root / "input"),
                "SM_INPUT_CONFIG_DIR": str(self.config),
                "SM_OUTPUT_DIR": str(self.output),
                "SM_OUTPUT_DATA_DIR": str(self.output_data),
                "SM_CHANNELS": json.dumps(channels),
                "SM_NUM_CPUS": "2",
                "SM_NUM_GPUS": "0",
                "SM_HOSTS": json.dumps(["algo-1"]),
                "SM_CURRENT_HOST": "algo-1",
            }
        )
        for name in channels:
            env[f"SM_CHANNEL_{name.upper()}"] = str(self.data / name)
        return env

    def run(
        self,
        algorithm: str,
        hyperparameters: Mapping[str, Any],
        *,
        as_args: bool = False,
        env: Mapping[str, str] | None = None,
        in_process: bool = False,
    ) -> Result:
        """Run the algorithm to completion and collect what it left.

        By default ``python -m modelyard.algorithms.<name>`` runs as a child process. With
        ``in_process`` the module's ``main(argv, environ)`` runs here instead (the same
        code path without the process boundary or the imports), for cheap variants.
        """
        args: list[str] = []
        if as_args:
            for key, value in hyperparameters.items():
                args += [f"--{key}", str(value)]
        environ = self.environ(hyperparameters)
        environ.update(env or {})
        if in_process:
            module = importlib.import_module(f"modelyard.algorithms.{algorithm}")
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                returncode = module.main(args, environ)
            stdout, stderr = out.getvalue(), err.getvalue()
        else:
            proc = subprocess.run(
                [sys.executable, "-m", f"modelyard.algorithms.{algorithm}", *args],
                cwd=self.root,
                env=environ,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
                check=False,
            )
            returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        failure_file = self.output / "failure"
        failure = failure_file.read_text(encoding="utf-8") if failure_file.exists() else None
        metrics: dict[str, list[tuple[int, float]]] = {}
        for line in stdout.splitlines():
            if line.startswith("#metric"):
                match = METRIC_LINE.match(line)
                assert match, f"malformed metric line {line!r}"
                metrics.setdefault(match[1], []).append((int(match[3]), float(match[2])))
        return Result(returncode, stdout, stderr, failure, metrics)

    def predictions(self) -> pa.Table:
        return pacsv.read_csv(self.output_data / "predictions.csv")


Columns = dict[str, np.ndarray]


def rows(columns: Columns, start: int, stop: int | None = None) -> Columns:
    """Rows ``start:stop`` of every column."""
    return {name: values[start:stop] for name, values in columns.items()}


def without(columns: Columns, *names: str) -> Columns:
    return {name: values for name, values in columns.items() if name not in names}


def features(x: np.ndarray) -> Columns:
    return {f"x{j}": x[:, j] for j in range(x.shape[1])}


def classification(n: int, d: int = 5, classes: int = 2, seed: int = 0) -> Columns:
    """Well-separated Gaussian classes: labels 0..classes-1 in a ``label`` column."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, d))
    label = rng.integers(0, classes, size=n)
    x = centres[label] + rng.normal(size=(n, d))
    return {"label": label, **features(x)}


def regression(n: int, d: int = 5, noise: float = 0.1, seed: int = 0) -> Columns:
    """``label = x @ w + 1 + noise``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = np.linspace(1.0, -1.0, d)
    return {"label": x @ w + 1.0 + rng.normal(scale=noise, size=n), **features(x)}


def ranking(queries: int, per_query: int = 10, d: int = 4, seed: int = 0) -> Columns:
    """Relevance 0..3 driven by x0, queries shuffled (not contiguous) in a ``qid`` column."""
    rng = np.random.default_rng(seed)
    n = queries * per_query
    x = rng.normal(size=(n, d))
    relevance = np.clip(np.round(1.5 + x[:, 0] + rng.normal(scale=0.2, size=n)), 0, 3)
    qid = np.repeat(np.arange(queries), per_query)
    order = rng.permutation(n)
    return {"qid": qid[order], "label": relevance[order].astype(np.int64), **features(x[order])}


def ndcg(scores: np.ndarray, relevance: np.ndarray, qid: np.ndarray) -> float:
    """Mean NDCG over queries (exponential gain, log2 discount, full depth)."""
    values = []
    for query in np.unique(qid):
        mask = qid == query
        gains = 2.0 ** relevance[mask] - 1
        discounts = 1 / np.log2(np.arange(2, mask.sum() + 2))
        ideal = np.sort(gains)[::-1] @ discounts
        if ideal > 0:
            values.append(gains[np.argsort(-scores[mask], kind="stable")] @ discounts / ideal)
    return float(np.mean(values))


def blobs(centres: np.ndarray, per_centre: int, scale: float = 0.3, seed: int = 0) -> Columns:
    """Points around each centre, shuffled; the centre index is in a ``label`` column."""
    rng = np.random.default_rng(seed)
    label = np.repeat(np.arange(len(centres)), per_centre)
    rng.shuffle(label)
    x = centres[label] + rng.normal(scale=scale, size=(len(label), centres.shape[1]))
    return {"label": label, **features(x)}


def assert_round_trip(job: JobDir, algorithm: str, test_rows: Any) -> Any:
    """``load()`` from the model dir predicts what training wrote to predictions.csv."""
    module = importlib.import_module(f"modelyard.algorithms.{algorithm}")
    predictor = module.load(job.model)
    predicted = np.asarray(predictor.predict(test_rows))
    written = job.predictions()
    if predicted.ndim == 1:
        expected = np.asarray(written.column("prediction").to_pylist())
    else:
        expected = np.column_stack(
            [written.column(f"prediction_{j}").to_numpy() for j in range(predicted.shape[1])]
        )
    if predicted.dtype.kind in "fc":
        np.testing.assert_allclose(predicted, expected, rtol=1e-6, atol=1e-9)
    else:
        assert [str(v) for v in predicted.tolist()] == [str(v) for v in expected.tolist()]
    return predictor
