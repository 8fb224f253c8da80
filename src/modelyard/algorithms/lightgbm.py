"""Built-in LightGBM: ``python -m modelyard.algorithms.lightgbm [--name value ...]``.

Trains gradient-boosted trees with :func:`lightgbm.train` on the ``train`` channel
(classification, regression, or ranking with a ``group`` query-id column), watches the
``validation`` channel when given (per-round metrics; early stopping on the first
metric) and scores the ``test`` channel when given (``test:<metric>`` lines and
``predictions.csv``).

Writes to ``SM_MODEL_DIR``: ``model.txt`` (LightGBM's text format; with early stopping,
only the rounds up to the best one), ``signature.json`` and ``metadata.json``. Metric
lines: ``validation:<metric>`` every round (step = round, from 0); ``train:<metric>`` once,
for the saved model, at its last round (after early stopping, the validation metrics are
printed again there too); ``test:<metric>`` at the same step.

Multi-host jobs (Ray backend) train data-parallel (``tree_learner="data"``,
``pre_partition``): every host reads its shard of ``train`` (give that channel
``distribution="ShardedByS3Key"``; ``validation`` must be fully replicated, so every host
stops early at the same round), the hosts connect through ``MODELYARD_LGBM_MACHINES`` and
``MODELYARD_LGBM_LOCAL_LISTEN_PORT``, and only algo-1 prints metric lines and writes the
model. Its ``train:<metric>`` lines cover its own shard. Needs ``num_class`` for
multiclass.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from modelyard.algorithms._contract import Contract, HyperparameterError, Metrics, run_entry_point
from modelyard.algorithms._gbdt import (
    Split,
    Task,
    check_multi_host,
    check_task_hyperparameters,
    load_gbdt_data,
    parse_metrics,
)
from modelyard.algorithms._model_files import (
    read_signature,
    write_metadata,
    write_predictions,
    write_signature,
)
from modelyard.algorithms._schemas import LightGBMHyperparameters, OutputSpec, Signature
from modelyard.algorithms._tables import as_matrix

NAME = "lightgbm"
MODEL_FILE = "model.txt"
MACHINES_ENV = "MODELYARD_LGBM_MACHINES"
LISTEN_PORT_ENV = "MODELYARD_LGBM_LOCAL_LISTEN_PORT"
TASKS: dict[str, Task] = {
    "binary": "binary",
    "multiclass": "multiclass",
    "multiclassova": "multiclass",
    "lambdarank": "ranking",
    "rank_xendcg": "ranking",
}
KNOWN_METRICS = frozenset(
    {
        "l1", "mae", "mean_absolute_error", "regression_l1", "l2", "mse",
        "mean_squared_error", "regression_l2", "regression", "rmse", "l2_root",
        "root_mean_squared_error", "quantile", "mape", "mean_absolute_percentage_error",
        "huber", "fair", "poisson", "gamma", "gamma_deviance", "tweedie", "ndcg",
        "lambdarank", "rank_xendcg", "xendcg", "map", "mean_average_precision", "auc",
        "average_precision", "binary_logloss", "binary", "binary_error", "auc_mu",
        "multi_logloss", "multiclass", "softmax", "multiclassova", "multi_error",
        "cross_entropy", "xentropy", "cross_entropy_lambda", "xentlambda",
        "kullback_leibler", "kldiv",
    }
)  # fmt: skip


def task_of(objective: str) -> Task:
    """The task family of a LightGBM objective."""
    return TASKS.get(objective, "regression")


def check_metrics(text: str | None) -> list[str]:
    """Parse ``metric``; HyperparameterError naming unknown metrics."""
    names = parse_metrics(text)
    unknown = [name for name in names if name not in KNOWN_METRICS]
    if unknown:
        raise HyperparameterError(
            f"metric: unknown LightGBM metric(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(KNOWN_METRICS))}"
        )
    return names


def booster_params(
    hps: LightGBMHyperparameters, num_class: int | None, num_threads: int
) -> dict[str, Any]:
    """The ``params`` dict for :func:`lightgbm.train`."""
    params: dict[str, Any] = {
        "objective": hps.objective,
        "learning_rate": hps.learning_rate,
        "num_leaves": hps.num_leaves,
        "max_depth": hps.max_depth,
        "min_data_in_leaf": hps.min_data_in_leaf,
        "feature_fraction": hps.feature_fraction,
        "bagging_fraction": hps.bagging_fraction,
        "bagging_freq": hps.bagging_freq,
        "lambda_l1": hps.lambda_l1,
        "lambda_l2": hps.lambda_l2,
        "max_bin": hps.max_bin,
        "seed": hps.seed,
        "num_threads": num_threads,
        "verbosity": -1,
    }
    if task_of(hps.objective) == "multiclass":
        params["num_class"] = num_class
    metrics = parse_metrics(hps.metric)
    if metrics:
        params["metric"] = metrics
    return params


def output_spec(task: Task, num_class: int | None) -> OutputSpec:
    """What ``predict`` returns for ``task``."""
    if task == "multiclass":
        return OutputSpec(
            name="probabilities",
            dtype="float64",
            shape=[-1, num_class or 0],
            description="probability of each class 0..num_class-1",
        )
    name, description = {
        "binary": ("probability", "probability of class 1"),
        "ranking": ("score", "relevance score; higher ranks first"),
        "regression": ("value", "predicted value"),
    }[task]
    return OutputSpec(name=name, dtype="float64", shape=[-1], description=description)


class LightGBMPredictor:
    """Predicts with a trained booster; inputs are checked against the signature."""

    def __init__(self, booster: lgb.Booster, signature: Signature) -> None:
        self.booster = booster
        self.signature = signature

    def predict(self, data: Any) -> npt.NDArray[np.float64]:
        """Rows (arrays, sequences, mappings, Arrow or pandas) -> the signature's output."""
        matrix = as_matrix(data, self.signature.feature_names, np.float64)
        return np.asarray(self.booster.predict(matrix, validate_features=False))


def load(model_dir: str | Path) -> LightGBMPredictor:
    """Load ``model.txt`` and ``signature.json`` from ``model_dir`` (no pickle)."""
    booster = lgb.Booster(model_file=str(Path(model_dir) / MODEL_FILE))
    return LightGBMPredictor(booster, read_signature(Path(model_dir)))


def _metric_lines(metrics: Metrics) -> Callable[[lgb.callback.CallbackEnv], None]:
    """A callback printing each round's evaluation results as metric lines."""

    def callback(env: lgb.callback.CallbackEnv) -> None:
        for result in env.evaluation_result_list or []:
            metrics.emit(f"{result[0]}:{result[1]}", float(result[2]), env.iteration)

    return callback


def train_booster(
    params: dict[str, Any],
    dtrain: lgb.Dataset,
    dvalid: lgb.Dataset | None,
    *,
    num_boost_round: int,
    early_stopping_rounds: int | None,
    metrics: Metrics,
) -> lgb.Booster:
    """Train and return the booster rolled back to its best round.

    Emits validation metrics every round, then the kept model's training-set metrics (and,
    after early stopping, its validation metrics again) at its last round. Training-set
    metrics come from the booster's own training scores, so they cost one metric pass;
    every round they would cost about 10% of the training time on 1M rows. With the
    :func:`network_params` of a multi-host job every host calls this on its shard.
    """
    callbacks = [_metric_lines(metrics)]
    stopping = early_stopping_rounds is not None
    if stopping:
        assert early_stopping_rounds is not None and dvalid is not None
        callbacks.append(
            lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False)
        )
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=num_boost_round,
        valid_sets=[] if dvalid is None else [dvalid],
        valid_names=[] if dvalid is None else ["validation"],
        callbacks=callbacks,
        keep_training_booster=True,  # keeps training scores and lets eval() take new data
    )
    if stopping and booster.best_iteration > 0:
        while booster.current_iteration() > booster.best_iteration:
            booster.rollback_one_iter()
    step = booster.current_iteration() - 1
    for result in booster.eval_train():
        metrics.emit(f"train:{result[1]}", float(result[2]), step)
    if stopping:
        assert dvalid is not None
        # The rolled-back model's metrics are the last lines for their names.
        _emit_eval(booster, dvalid, "validation", metrics, step)
    return booster


def _dataset(split: Split, params: dict[str, Any], reference: lgb.Dataset | None) -> lgb.Dataset:
    """A constructed Dataset; ``params`` are the booster's, as binning depends on several.

    Multi-host: left to :func:`lightgbm.train` to construct, after it has connected the
    hosts, so the bins are found over all shards.
    """
    group = None
    if split.qid is not None:
        group = np.diff(np.flatnonzero(np.r_[True, split.qid[1:] != split.qid[:-1], True]))
    dataset = lgb.Dataset(
        split.features,
        label=split.label,
        group=group,
        reference=reference,
        params=params,
    )
    return dataset if "machines" in params else dataset.construct()


def _emit_eval(
    booster: lgb.Booster, dataset: lgb.Dataset, data_name: str, metrics: Metrics, step: int
) -> None:
    for result in booster.eval(dataset, data_name):
        metrics.emit(f"{data_name}:{result[1]}", float(result[2]), step)


def network_params(contract: Contract) -> dict[str, Any]:
    """LightGBM's data-parallel parameters for a multi-host job (none for one host)."""
    if contract.cluster.size == 1:
        return {}
    env = contract.data_parallel_env(NAME, [MACHINES_ENV, LISTEN_PORT_ENV])
    try:
        port = int(env[LISTEN_PORT_ENV])
    except ValueError:
        raise HyperparameterError(
            f"{LISTEN_PORT_ENV} must be a port number, got {env[LISTEN_PORT_ENV]!r}"
        ) from None
    return {
        "tree_learner": "data",
        "num_machines": contract.cluster.size,
        "machines": env[MACHINES_ENV],
        "local_listen_port": port,
        "pre_partition": True,
    }


def train(contract: Contract) -> None:
    """Validate, read, train, save; see the module docstring for inputs and outputs."""
    hps = contract.hyperparameters(LightGBMHyperparameters)
    task = task_of(hps.objective)
    check_task_hyperparameters(contract, task, hps.objective, hps.group, hps.early_stopping_rounds)
    check_metrics(hps.metric)
    check_multi_host(contract, task, hps.num_class, NAME)
    network = network_params(contract)
    data = load_gbdt_data(
        contract, hps, algorithm=NAME, task=task, group=hps.group, num_class=hps.num_class
    )
    params = booster_params(hps, data.num_class, hps.num_threads or contract.num_cpus)
    params.update(network)
    # Only algo-1 reports; the others' metric values are the same (or their shard's).
    metrics = contract.metrics if contract.is_lead_host else Metrics(quiet=True)
    dtrain = _dataset(data.train, params, reference=None)
    dvalid = None
    if data.validation is not None:
        dvalid = _dataset(data.validation, params, reference=dtrain)
    booster = train_booster(
        params,
        dtrain,
        dvalid,
        num_boost_round=hps.num_boost_round,
        early_stopping_rounds=hps.early_stopping_rounds,
        metrics=metrics,
    )
    if not contract.is_lead_host:
        return  # algo-1 writes the model
    last_round = booster.current_iteration() - 1
    signature = Signature(
        algorithm=NAME,
        inputs=data.inputs,
        label=data.label,
        group=data.group,
        output=output_spec(task, data.num_class),
    )
    contract.model_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(contract.model_dir / MODEL_FILE)
    write_signature(contract, signature)
    if data.test is not None:
        if data.test.label is not None:
            dtest = _dataset(data.test, params, reference=dtrain)
            _emit_eval(booster, dtest, "test", contract.metrics, last_round)
        predictor = LightGBMPredictor(booster, signature)
        predictions = predictor.predict(data.test.features)
        write_predictions(contract, data.test.in_channel_order(predictions))
    write_metadata(
        contract,
        NAME,
        hps,
        libraries=["lightgbm"],
        extra={"task": task, "num_class": data.num_class, "rounds": last_round + 1},
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run :func:`train` under the container contract; returns the exit status.

    ``argv`` and ``environ`` default to the process's own arguments and environment.
    """
    return run_entry_point(NAME, train, argv, environ)


if __name__ == "__main__":
    sys.exit(main())
