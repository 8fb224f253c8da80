"""Acceptance: a SageMaker script-mode scikit-learn training script, unmodified, trains
on dataset versions and produces a model artifact (model.tar.gz holding model.joblib)."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import joblib
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

import modelyard as my

FIXTURES = Path(__file__).parent / "fixtures"


def _rows(n: int, seed: int) -> pa.Table:
    rng = random.Random(seed)
    a = [rng.random() for _ in range(n)]
    b = [rng.random() for _ in range(n)]
    return pa.table(
        {"a": a, "b": b, "label": [int(x + y > 1.0) for x, y in zip(a, b, strict=True)]}
    )


def test_sagemaker_sklearn_script_runs_unmodified(tmp_path: Path) -> None:
    pacsv.write_csv(_rows(300, 1), tmp_path / "train.csv")
    pacsv.write_csv(_rows(100, 2), tmp_path / "test.csv")
    with my.connect(home=tmp_path / "home") as client:
        client.datasets.register("flowers", tmp_path / "train.csv", profile=False)
        test = client.datasets.register("flowers-test", tmp_path / "test.csv", profile=False)
        estimator = my.Estimator(
            entry_point="sagemaker_sklearn_train.py",
            source_dir=FIXTURES,
            hyperparameters={"n-estimators": 25, "min-samples-leaf": 2},
            metric_definitions=[
                {"Name": "train:accuracy", "Regex": r"train accuracy: ([0-9.]+)"},
                {"Name": "test:accuracy", "Regex": r"test accuracy: ([0-9.]+)"},
            ],
            cpus=1,
            client=client,
        )
        job = estimator.fit({"train": "flowers:1", "test": test}, logs=False)
        assert job.state == "Completed", job.failure_reason
        lines = [x.text for x in client.jobs.logs(job.id).lines]
        assert "training on 300 rows; testing on 100 rows" in lines
        assert job.final_metrics["test:accuracy"] > 0.8
        assert [c.source for c in job.spec.inputs] == [
            "dataset:flowers:1",
            "dataset:flowers-test:1",
        ]
        assert job.model is not None and job.model.files == ["model.joblib"]
        archive = client.artifacts.read_bytes(job.model.digest)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    model = joblib.load(tmp_path / "model" / "model.joblib")
    assert model.n_estimators == 25 and model.min_samples_leaf == 2
    probe = pd.DataFrame({"a": [0.9, 0.05], "b": [0.9, 0.1]})
    assert list(model.predict(probe)) == [1, 0]
