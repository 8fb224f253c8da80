"""Every algorithm fails fast, with a message naming the problem, on bad input.

A failure is exit status 1, a one-paragraph message in ``output/failure`` (and on stderr)
and nothing in the model folder. Each kind of failure runs once per algorithm in this
process (``main(argv, environ)``) and once as a real child process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from algokit import JobDir, classification, features, rows, without


def _classes(job: JobDir, drop_label: bool) -> None:
    data = classification(60, seed=91)
    job.write("train", without(data, "label") if drop_label else data)


def _unlabelled(job: JobDir, broken: bool) -> None:
    data: dict[str, Any] = features(np.random.default_rng(92).normal(size=(60, 3)))
    if broken:
        data["city"] = np.array(["paris", "rome"] * 30)
    job.write("train", data)


def _texts(job: JobDir, drop_label: bool) -> None:
    data = {"text": ["good match", "bad market"] * 20, "label": ["a", "b"] * 20}
    job.write("train", without(data, "label") if drop_label else data)


def _series(job: JobDir, drop_target: bool) -> None:
    days = pd.date_range("2024-01-01", periods=40, freq="D").strftime("%Y-%m-%d").to_numpy()
    data = {"timestamp": days, "target": np.arange(40.0) + 10}
    job.write("train", without(data, "target") if drop_target else data)


@dataclass(frozen=True)
class Case:
    """Valid inputs for one algorithm, and how to break them."""

    write: Callable[[JobDir, bool], None]
    hps: dict[str, Any]
    bad_value: tuple[str, str]
    missing: str  # a fragment of the message when a required column is missing or bad


CASES = {
    "xgboost": Case(
        _classes,
        {"objective": "binary:logistic", "num_round": 2},
        ("num_round", "ten"),
        "no label column 'label'",
    ),
    "lightgbm": Case(
        _classes,
        {"objective": "binary", "num_boost_round": 2},
        ("learning_rate", "fast"),
        "no label column 'label'",
    ),
    "linear_learner": Case(
        _classes, {"predictor_type": "binary_classifier"}, ("l1", "lots"), "no label column 'label'"
    ),
    "knn": Case(
        _classes,
        {"predictor_type": "classifier", "k": 3},
        ("k", "three"),
        "no label column 'label'",
    ),
    "kmeans": Case(_unlabelled, {"k": 2}, ("k", "two"), "city (string)"),
    "pca": Case(_unlabelled, {"num_components": 2}, ("num_components", "2.5"), "city (string)"),
    "random_cut_forest": Case(
        _unlabelled, {"num_trees": 5}, ("num_trees", "many"), "city (string)"
    ),
    "text_classification": Case(_texts, {}, ("word_ngrams", "bi"), "no label column 'label'"),
    "forecasting": Case(
        _series, {"prediction_length": 3}, ("prediction_length", "week"), "no column 'target'"
    ),
}

# Which algorithm runs each kind of failure as a real child process.
IN_CHILD = {
    "missing_column": "xgboost",
    "unknown_hyperparameter": "kmeans",
    "bad_value": "forecasting",
    "empty_channel": "text_classification",
}


def _run(job: JobDir, algorithm: str, kind: str, hps: dict[str, Any]) -> Any:
    return job.run(algorithm, hps, in_process=IN_CHILD[kind] != algorithm)


def _assert_nothing_trained(job: JobDir) -> None:
    assert list(job.model.iterdir()) == [], "a failed job must not leave a model"


@pytest.mark.parametrize("algorithm", sorted(CASES))
def test_missing_or_bad_column(job: JobDir, algorithm: str) -> None:
    case = CASES[algorithm]
    case.write(job, True)
    result = _run(job, algorithm, "missing_column", case.hps)
    result.assert_failed(algorithm, case.missing, "channel 'train'")
    _assert_nothing_trained(job)


@pytest.mark.parametrize("algorithm", sorted(CASES))
def test_unknown_hyperparameter_lists_the_accepted_ones(job: JobDir, algorithm: str) -> None:
    case = CASES[algorithm]
    case.write(job, False)
    result = _run(job, algorithm, "unknown_hyperparameter", {**case.hps, "bogus_rate": "1"})
    result.assert_failed("unknown hyperparameter(s) bogus_rate", "accepted:", case.bad_value[0])
    _assert_nothing_trained(job)


@pytest.mark.parametrize("algorithm", sorted(CASES))
def test_value_of_the_wrong_type(job: JobDir, algorithm: str) -> None:
    case = CASES[algorithm]
    case.write(job, False)
    name, value = case.bad_value
    result = _run(job, algorithm, "bad_value", {**case.hps, name: value})
    result.assert_failed("invalid hyperparameter(s)", f"{name}:", repr(value))
    _assert_nothing_trained(job)


@pytest.mark.parametrize("algorithm", sorted(CASES))
def test_empty_train_channel(job: JobDir, algorithm: str) -> None:
    job.channel("train")
    result = _run(job, algorithm, "empty_channel", CASES[algorithm].hps)
    result.assert_failed("channel 'train' is empty")
    _assert_nothing_trained(job)


def test_channel_whose_files_have_no_rows(job: JobDir) -> None:
    (job.channel("train") / "part-0.csv").write_text("label,x0\n", encoding="utf-8")
    result = job.run("xgboost", {"objective": "binary:logistic"}, in_process=True)
    result.assert_failed("channel 'train' is empty", "have no rows")


def test_missing_train_channel(job: JobDir) -> None:
    result = job.run("linear_learner", {"predictor_type": "regressor"}, in_process=True)
    result.assert_failed("channel 'train' is required", "SM_CHANNEL_TRAIN")


def test_out_of_range_and_missing_required_values(job: JobDir) -> None:
    _classes(job, False)
    result = job.run("xgboost", {"eta": "2"}, in_process=True)
    result.assert_failed("eta:", "less than or equal to 1", "Learning rate")
    result = job.run("kmeans", {}, in_process=True)
    result.assert_failed("k: Field required", "Number of clusters")


@pytest.mark.parametrize(
    ("hps", "fragments"),
    [
        ({"objective": "rank:ndcg"}, ["set `group` to the query-id column"]),
        ({"objective": "binary:logistic", "early_stopping_rounds": 3}, ["validation channel"]),
        ({"objective": "binary:logistic", "eval_metric": "accuracy"}, ["unknown XGBoost metric"]),
    ],
)
def test_inconsistent_xgboost_hyperparameters(
    job: JobDir, hps: dict[str, Any], fragments: list[str]
) -> None:
    _classes(job, False)
    job.run("xgboost", hps, in_process=True).assert_failed(*fragments)


def test_labels_the_objective_cannot_take(job: JobDir) -> None:
    data = classification(60, classes=3, seed=93)
    job.write("train", data)
    result = job.run("lightgbm", {"objective": "binary"}, in_process=True)
    result.assert_failed("binary objectives need labels 0 or 1", "has 2")
    result = job.run("xgboost", {"objective": "multi:softmax", "num_class": 2}, in_process=True)
    result.assert_failed("num_class is 2", "label 2")


def test_non_numeric_features_are_named(job: JobDir) -> None:
    data: dict[str, Any] = classification(40, seed=94)
    data["colour"] = np.array(["red", "blue"] * 20)
    job.write("train", data)
    result = job.run("xgboost", {"objective": "binary:logistic"}, in_process=True)
    result.assert_failed("colour (string)", "not numeric")


def test_validation_channel_without_the_training_columns(job: JobDir) -> None:
    data = classification(80, seed=95)
    job.write("train", rows(data, 0, 60))
    job.write("validation", without(rows(data, 60), "x3"))
    result = job.run("linear_learner", {"predictor_type": "binary_classifier"}, in_process=True)
    result.assert_failed("channel 'validation' lacks column(s) 'x3'")


def test_multi_host_jobs_are_refused(job: JobDir) -> None:
    _classes(job, False)
    env = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-2"}
    hps = {"predictor_type": "binary_classifier"}
    result = job.run("linear_learner", hps, env=env, in_process=True)
    result.assert_failed("SM_HOSTS lists 2 hosts", "single host", "instance_count=1")


@pytest.mark.parametrize(
    ("algorithm", "hps", "missing"),
    [
        ("xgboost", {"objective": "binary:logistic"}, "MODELYARD_XGB_TRACKER_URI"),
        ("lightgbm", {"objective": "binary"}, "MODELYARD_LGBM_MACHINES"),
    ],
)
def test_multi_host_gbdt_needs_the_data_parallel_contract(
    job: JobDir, algorithm: str, hps: dict[str, Any], missing: str
) -> None:
    _classes(job, False)
    env = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-1"}
    result = job.run(algorithm, hps, env=env, in_process=True)
    result.assert_failed("SM_HOSTS lists 2 hosts", missing, "not set", "Ray backend")
    assert not (job.model / "model.ubj").exists() and not (job.model / "model.txt").exists()


def test_multi_host_multiclass_needs_num_class(job: JobDir) -> None:
    _classes(job, False)
    env = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-1"}
    result = job.run("lightgbm", {"objective": "multiclass"}, env=env, in_process=True)
    result.assert_failed("multi-host lightgbm multiclass job must set num_class")


def test_irregular_series(job: JobDir) -> None:
    days = pd.date_range("2024-01-01", periods=40, freq="D").delete(20)
    job.write("train", {"timestamp": days.strftime("%Y-%m-%d").to_numpy(), "target": np.ones(39)})
    result = job.run("forecasting", {"prediction_length": 3, "frequency": "D"}, in_process=True)
    result.assert_failed("not regular at frequency D", "2024-01-22")
