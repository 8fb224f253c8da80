"""The built-in LightGBM algorithm, run as a subprocess under the container contract."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from algokit import (
    JobDir,
    assert_round_trip,
    classification,
    ndcg,
    ranking,
    regression,
    rows,
    without,
)

MODEL_FILES = ("model.txt",)


def test_binary_classification_with_early_stopping(job: JobDir) -> None:
    data = classification(1500, seed=11)
    job.write("train", rows(data, 0, 1000), fmt="parquet")
    job.write("validation", rows(data, 1000, 1250))
    job.write("test", rows(data, 1250))
    hps = {
        "objective": "binary",
        "num_boost_round": 300,
        "learning_rate": 0.3,
        "metric": "binary_logloss,auc",
        "early_stopping_rounds": 5,
        "min_data_in_leaf": 5,
    }
    result = job.run("lightgbm", hps, as_args=True)
    metadata = result.assert_trained(job, MODEL_FILES)
    history = result.metrics["validation:binary_logloss"]
    assert len(history) < 300, "early stopping should stop before the last round"
    best = min(value for _, value in history)
    assert result.last("validation:binary_logloss") == best
    assert metadata["rounds"] == history[-1][0] + 1
    assert (job.model / "model.txt").read_text().count("Tree=") == metadata["rounds"]
    assert [step for step, _ in result.metrics["train:auc"]] == [history[-1][0]]
    test = rows(data, 1250)
    predictor = assert_round_trip(job, "lightgbm", pa.table(without(test, "label")))
    assert np.mean((predictor.predict(pa.table(test)) > 0.5) == test["label"]) > 0.85


def test_multiclass(job: JobDir) -> None:
    data = classification(900, classes=3, seed=12)
    job.write("train", rows(data, 0, 700))
    job.write("validation", rows(data, 700))
    result = job.run(
        "lightgbm", {"objective": "multiclass", "num_boost_round": 30}, in_process=True
    )
    result.assert_trained(job, MODEL_FILES)
    signature = json.loads((job.model / "signature.json").read_text())
    assert signature["output"]["shape"] == [-1, 3]
    assert result.last("validation:multi_logloss") < 0.5


def test_regression(job: JobDir) -> None:
    data = regression(1000, seed=13)
    job.write("train", rows(data, 0, 800), fmt="jsonl")
    job.write("validation", rows(data, 800))
    hps = {"objective": "regression", "num_boost_round": 100, "metric": "rmse"}
    result = job.run("lightgbm", hps, in_process=True)
    result.assert_trained(job, MODEL_FILES)
    assert result.last("validation:rmse") < 0.5 * float(np.std(data["label"]))


def test_lambdarank(job: JobDir) -> None:
    data, test = ranking(120, seed=14), ranking(30, seed=15)
    job.write("train", data)
    job.write("test", test)
    hps = {"objective": "lambdarank", "group": "qid", "num_boost_round": 30, "min_data_in_leaf": 5}
    result = job.run("lightgbm", hps, in_process=True)
    result.assert_trained(job, MODEL_FILES)
    predictor = assert_round_trip(job, "lightgbm", pa.table(without(test, "label", "qid")))
    assert ndcg(predictor.predict(pa.table(test)), test["label"], test["qid"]) > 0.9
    assert result.last("test:ndcg@1") > 0.8
