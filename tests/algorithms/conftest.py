"""A SageMaker-like ``/opt/ml`` job directory, and running a built-in algorithm in it.

``job`` (a fixture) lays out ``input/config``, ``input/data/<channel>``, ``model``,
``output/data`` and ``checkpoints`` under a temporary folder; ``job.run(name, hps)`` starts
``python -m modelyard.algorithms.<name>`` as a real subprocess with the ``SM_*`` variables,
hyperparameters in ``SM_HPS`` and ``hyperparameters.json`` (as strings, like SageMaker)
and, optionally, as ``--name value`` arguments, and parses its metric lines.
"""

from __future__ import annotations

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

    def __init__(self, root: Path) -> None:
        self.root = root
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
    ) -> Result:
        """Run the algorithm to completion; hyperparameters also as arguments if asked."""
        argv = [sys.executable, "-m", f"modelyard.algorithms.{algorithm}"]
        if as_args:
            for key, value in hyperparameters.items():
                argv += [f"--{key}", str(value)]
        environ = self.environ(hyperparameters)
        environ.update(env or {})
        proc = subprocess.run(
            argv,
            cwd=self.root,
            env=environ,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        failure_file = self.output / "failure"
        failure = failure_file.read_text(encoding="utf-8") if failure_file.exists() else None
        metrics: dict[str, list[tuple[int, float]]] = {}
        for line in proc.stdout.splitlines():
            if line.startswith("#metric"):
                match = METRIC_LINE.match(line)
                assert match, f"malformed metric line {line!r}"
                metrics.setdefault(match[1], []).append((int(match[3]), float(match[2])))
        return Result(proc.returncode, proc.stdout, proc.stderr, failure, metrics)

    def predictions(self) -> pa.Table:
        return pacsv.read_csv(self.output_data / "predictions.csv")


@pytest.fixture
def job(tmp_path: Path) -> JobDir:
    """A fresh /opt/ml-like job directory."""
    return JobDir(tmp_path / "ml")

