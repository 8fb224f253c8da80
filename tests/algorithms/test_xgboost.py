"""The built-in XGBoost algorithm, run as a subprocess under the container contract."""

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

MODEL_FILES = ("model.ubj",)


def test_binary_classification_trains_reports_and_round_trips(job: JobDir) -> None:
    data = classification(1500, seed=1)
    job.write("train", rows(data, 0, 1000))
    job.write("validation", rows(data, 1000, 1250), fmt="parquet")
    job.write("test", rows(data, 1250), fmt="jsonl")
    hps = {"objective": "binary:logistic", "num_round": 30, "eval_metric": "logloss,auc"}
    result = job.run("xgboost", hps, as_args=True)
    metadata = result.assert_trained(job, MODEL_FILES)
    # Validation metrics every round (steps 0..29); training-set metrics once, at the end.
    assert [step for step, _ in result.metrics["validation:auc"]] == list(range(30))
    assert [step for step, _ in result.metrics["train:logloss"]] == [29]
    assert result.last("train:logloss") < result.metrics["validation:logloss"][0][1]
    assert result.last("validation:auc") > 0.95
    assert metadata["hyperparameters"]["num_round"] == 30
    assert metadata["libraries"]["xgboost"]
    signature = json.loads((job.model / "signature.json").read_text())
    assert [c["name"] for c in signature["inputs"]] == [f"x{j}" for j in range(5)]
    assert signature["label"]["name"] == "label"
    test = rows(data, 1250)
    predictor = assert_round_trip(job, "xgboost", pa.table(without(test, "label")))
    accuracy = np.mean((predictor.predict(pa.table(test)) > 0.5) == test["label"])
    assert accuracy > 0.85
    assert result.last("test:auc") > 0.95
    # Positional rows and mappings give the same answer as the table.
    matrix = np.column_stack([test[f"x{j}"] for j in range(5)])
    np.testing.assert_array_equal(
        predictor.predict(matrix[:3]), predictor.predict(pa.table(test))[:3]
    )
    first = {f"x{j}": float(test[f"x{j}"][0]) for j in range(5)}
    assert predictor.predict([first])[0] == predictor.predict(matrix[:1])[0]


def test_early_stopping_keeps_the_best_round(job: JobDir) -> None:
    data = classification(800, seed=2)
    job.write("train", rows(data, 0, 600))
    job.write("validation", rows(data, 600))
    hps = {
        "objective": "binary:logistic",
        "num_round": 500,
        "eta": 0.5,
        "early_stopping_rounds": 3,
        "eval_metric": "logloss",
    }
    result = job.run("xgboost", hps, in_process=True)
    metadata = result.assert_trained(job, MODEL_FILES)
    history = result.metrics["validation:logloss"][:-1]
    best_step, best_value = min(history, key=lambda point: point[1])
    assert len(history) < 500
    assert result.metrics["validation:logloss"][-1] == (best_step, best_value)
    assert metadata["rounds"] == best_step + 1


def test_multiclass_with_headerless_csv_label_first(job: JobDir) -> None:
    data = classification(1200, classes=3, seed=3)
    job.write("train", rows(data, 0, 900), header=False)
    job.write("test", rows(data, 900), header=False)
    hps = {"objective": "multi:softprob", "num_round": 20, "label_column_index": 0}
    result = job.run("xgboost", hps, in_process=True)
    result.assert_trained(job, MODEL_FILES)
    signature = json.loads((job.model / "signature.json").read_text())
    assert signature["label"]["name"] == "f0"
    assert signature["output"]["shape"] == [-1, 3]
    test = rows(data, 900)
    matrix = np.column_stack([test[f"x{j}"] for j in range(5)])
    predictor = assert_round_trip(job, "xgboost", matrix)
    assert np.mean(predictor.predict(matrix).argmax(axis=1) == test["label"]) > 0.85
    assert result.last("test:mlogloss") < 0.5


def test_regression(job: JobDir) -> None:
    data = regression(1000, seed=4)
    job.write("train", rows(data, 0, 800), fmt="parquet")
    job.write("validation", rows(data, 800))
    result = job.run("xgboost", {"objective": "reg:squarederror", "num_round": 60}, in_process=True)
    result.assert_trained(job, MODEL_FILES)
    assert result.last("validation:rmse") < 0.5 * float(np.std(data["label"]))


def test_ranking_sorts_queries_and_ranks_well(job: JobDir) -> None:
    data = ranking(120, seed=5)
    test = ranking(30, seed=6)
    job.write("train", data)
    job.write("validation", test)
    job.write("test", test)
    hps = {"objective": "rank:ndcg", "group": "qid", "num_round": 20, "eval_metric": "ndcg"}
    result = job.run("xgboost", hps, in_process=True)
    result.assert_trained(job, MODEL_FILES)
    assert result.last("validation:ndcg") > 0.9
    # predictions.csv follows the test channel's row order, although training sorts by query.
    predictor = assert_round_trip(job, "xgboost", pa.table(without(test, "label", "qid")))
    assert ndcg(predictor.predict(pa.table(test)), test["label"], test["qid"]) > 0.9
