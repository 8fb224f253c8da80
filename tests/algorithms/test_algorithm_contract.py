"""The container contract as algorithms read it: hyperparameters, paths, metrics, exits."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.algorithms import (
    ALGORITHMS,
    METRIC_FORMAT,
    HyperparameterError,
    validate_hyperparameters,
)
from modelyard.algorithms._contract import (
    AlgorithmError,
    Contract,
    Metrics,
    parse_hyperparameters,
    run_entry_point,
)
from modelyard.algorithms._schemas import XGBoostHyperparameters


def test_string_values_become_the_declared_types() -> None:
    hps = parse_hyperparameters(
        XGBoostHyperparameters,
        {
            "num_round": "25",
            "eta": "0.05",
            "lambda": "2",
            "objective": '"binary:logistic"',  # SageMaker script mode JSON-quotes strings
            "num_class": "null",
            "group": "None",
            "_tuning_objective_metric": "validation:auc",
            "sagemaker_program": "train.py",
        },
    )
    assert (hps.num_round, hps.eta, hps.reg_lambda) == (25, 0.05, 2.0)
    assert hps.objective == "binary:logistic"
    assert hps.num_class is None and hps.group is None


def test_every_problem_is_named() -> None:
    with pytest.raises(HyperparameterError) as caught:
        parse_hyperparameters(XGBoostHyperparameters, {"eta": "fast", "max_depth": "-1"})
    message = str(caught.value)
    assert "eta: Input should be a valid number" in message and "'fast'" in message
    assert "max_depth: Input should be greater than or equal to 0" in message
    with pytest.raises(HyperparameterError, match=r"unknown hyperparameter\(s\) etaa, roundz"):
        parse_hyperparameters(XGBoostHyperparameters, {"roundz": 1, "etaa": 1})


def test_validate_hyperparameters_is_the_public_check() -> None:
    assert set(ALGORITHMS) == {
        "xgboost", "lightgbm", "linear_learner", "kmeans", "knn", "pca",
        "random_cut_forest", "text_classification", "forecasting",
    }  # fmt: skip
    assert validate_hyperparameters("kmeans", {"k": "3"}).model_dump()["k"] == 3
    with pytest.raises(KeyError, match="known: forecasting"):
        validate_hyperparameters("deepar", {})


def _layout(root: Path) -> dict[str, str]:
    (root / "input" / "data" / "train").mkdir(parents=True)
    (root / "input" / "data" / "Extra").mkdir(parents=True)
    (root / "input" / "config").mkdir(parents=True)
    return {"SM_INPUT_DIR": str(root / "input"), "SM_OUTPUT_DIR": str(root / "output")}


def test_environment_defaults_and_precedence(tmp_path: Path) -> None:
    env = _layout(tmp_path)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"k": "3", "seed": "1"})
    )
    env["SM_CHANNEL_VALIDATION"] = str(tmp_path / "elsewhere")
    contract = Contract.from_environment(env, ["--seed", "7", "--init=random"])
    # No SM_HPS: hyperparameters.json, overridden by the arguments.
    assert contract.raw_hyperparameters == {"k": "3", "seed": "7", "init": "random"}
    assert contract.channels == {
        "extra": tmp_path / "input" / "data" / "Extra",
        "train": tmp_path / "input" / "data" / "train",
        "validation": tmp_path / "elsewhere",
    }
    assert contract.model_dir == Path("/opt/ml/model")
    assert contract.output_data_dir == tmp_path / "output" / "data"
    assert contract.cluster.hosts == ("algo-1",)
    env["SM_HPS"] = '{"k": 5}'
    assert Contract.from_environment(env, []).raw_hyperparameters == {"k": 5}


@pytest.mark.parametrize(
    ("env", "argv", "fragment"),
    [
        ({"SM_HPS": "{not json"}, [], "SM_HPS is not valid JSON"),
        ({"SM_HPS": "[1, 2]"}, [], "must be a JSON object"),
        ({}, ["positional"], "unexpected command-line argument 'positional'"),
        ({}, ["--k"], "--k has no value"),
        ({"SM_NUM_CPUS": "two"}, [], "SM_NUM_CPUS must be a whole number"),
        ({"SM_HOSTS": "algo-1"}, [], "SM_HOSTS must be a JSON list"),
        ({"SM_HOSTS": '["a", "b"]', "SM_CURRENT_HOST": "c"}, [], "'c' is not in SM_HOSTS"),
    ],
)
def test_malformed_environment(env: dict[str, str], argv: list[str], fragment: str) -> None:
    with pytest.raises(HyperparameterError, match=fragment):
        Contract.from_environment(env, argv)


def test_metric_lines(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = Metrics()
    metrics.emit("validation:auc", 0.5, 3)
    metrics.emit("validation:auc", float("nan"), 4)
    metrics.emit("train:ndcg@10", 1, 0)
    out, err = capsys.readouterr()
    assert METRIC_FORMAT == "#metric name={name} value={value} step={step}"
    assert out.splitlines() == [
        "#metric name=validation:auc value=0.5 step=3",
        "#metric name=train:ndcg@10 value=1.0 step=0",
    ]
    assert "validation:auc is nan" in err
    assert metrics.final == {"validation:auc": 0.5, "train:ndcg@10": 1.0}
    with pytest.raises(ValueError, match="must match"):
        metrics.emit("has space", 1.0)


def test_exit_status_and_failure_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = _layout(tmp_path)
    failure = tmp_path / "output" / "failure"

    def bad_data(contract: Contract) -> None:
        raise AlgorithmError("channel 'train' is\nempty")

    def bug(contract: Contract) -> None:
        raise RuntimeError("boom")

    assert run_entry_point("demo", lambda contract: None, [], env) == 0
    assert not failure.exists()
    assert run_entry_point("demo", bad_data, [], env) == 1
    assert failure.read_text() == "demo: channel 'train' is empty\n"
    assert run_entry_point("demo", bug, [], env) == 2
    assert "internal error (RuntimeError: boom)" in failure.read_text()
    assert "Traceback" in capsys.readouterr().err
    assert run_entry_point("demo", bad_data, ["stray"], env) == 1
    assert "unexpected command-line argument" in failure.read_text()


def test_public_modules_are_exactly_the_algorithms() -> None:
    """The jobs domain treats every public module of the package as an algorithm."""
    package = importlib.import_module("modelyard.algorithms")
    public = {m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")}
    assert public == set(ALGORITHMS)
    for info in ALGORITHMS.values():
        module = importlib.import_module(info.module)
        assert callable(module.main) and callable(module.load)


def test_importing_the_package_loads_no_ml_library() -> None:
    code = (
        "import sys, modelyard.algorithms; "
        "print([m for m in ('xgboost', 'lightgbm', 'sklearn', 'statsmodels', 'pandas') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
