"""Built-in XGBoost: ``python -m modelyard.algorithms.xgboost [--name value ...]``.

Trains gradient-boosted trees with :func:`xgboost.train` on the ``train`` channel
(classification, regression, or ranking with a ``group`` query-id column), watches the
``validation`` channel when given (per-round metrics, early stopping) and scores the
``test`` channel when given (``test:<metric>`` lines and ``predictions.csv``).

Writes to ``SM_MODEL_DIR``: ``model.ubj`` (XGBoost's UBJSON format; with early stopping,
only the rounds up to the best one), ``signature.json`` and ``metadata.json``. Metric
lines: ``validation:<metric>`` every round (step = round, from 0); ``train:<metric>`` once,
for the saved model, at its last round (after early stopping, the validation metrics are
printed again there too); ``test:<metric>`` at the same step.

Multi-host jobs (Ray backend) train data-parallel: every host reads its shard of ``train``
(give that channel ``distribution="ShardedByS3Key"``; ``validation`` is best left fully
replicated), joins XGBoost's collective through the tracker the backend started
(``MODELYARD_XGB_TRACKER_URI``/``_PORT``, ``dmlc_task_id=SM_CURRENT_HOST``; algo-1 is rank
0), and only algo-1 prints metric lines and writes the model. Training metrics are
computed over all shards. Needs ``tree_method`` hist or approx, and ``num_class`` for
multiclass.

The hot path stays in Arrow: the reader's table goes to a ``QuantileDMatrix`` (hist) or
``DMatrix`` (approx, exact) without pandas or a row-major copy.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from modelyard.algorithms._contract import (
    Contract,
    DataError,
    HyperparameterError,
    Metrics,
    run_entry_point,
)
from modelyard.algorithms._gbdt import (
    GbdtData,
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
from modelyard.algorithms._schemas import OutputSpec, Signature, XGBoostHyperparameters
from modelyard.algorithms._tables import as_matrix

NAME = "xgboost"
MODEL_FILE = "model.ubj"
TRACKER_URI_ENV = "MODELYARD_XGB_TRACKER_URI"
TRACKER_PORT_ENV = "MODELYARD_XGB_TRACKER_PORT"
KNOWN_METRICS = frozenset(
    {
        "rmse", "rmsle", "mae", "mape", "mphe", "logloss", "error", "merror", "mlogloss",
        "auc", "aucpr", "pre", "ndcg", "map", "poisson-nloglik", "gamma-nloglik",
        "cox-nloglik", "gamma-deviance", "tweedie-nloglik", "aft-nloglik",
        "interval-regression-accuracy",
    }
)  # fmt: skip
_BAD_NAME_CHARS = ("[", "]", "<")


def task_of(objective: str) -> Task:
    """The task family of an XGBoost objective."""
    if objective.startswith("binary:"):
        return "binary"
    if objective.startswith("multi:"):
        return "multiclass"
    if objective.startswith("rank:"):
        return "ranking"
    return "regression"


def check_eval_metrics(text: str | None) -> list[str]:
    """Parse ``eval_metric``; HyperparameterError naming unknown metrics."""
    names = parse_metrics(text)
    unknown = [n for n in names if n.split("@")[0].rstrip("-") not in KNOWN_METRICS]
    if unknown:
        raise HyperparameterError(
            f"eval_metric: unknown XGBoost metric(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(KNOWN_METRICS))} (with @k or @t suffixes where XGBoost allows)"
        )
    return names


def booster_params(
    hps: XGBoostHyperparameters, num_class: int | None, nthread: int
) -> dict[str, Any]:
    """The ``params`` dict for :func:`xgboost.train` (the benchmark's baseline uses it too)."""
    params: dict[str, Any] = {
        "objective": hps.objective,
        "eta": hps.eta,
        "max_depth": hps.max_depth,
        "min_child_weight": hps.min_child_weight,
        "gamma": hps.gamma,
        "subsample": hps.subsample,
        "colsample_bytree": hps.colsample_bytree,
        "lambda": hps.reg_lambda,
        "alpha": hps.alpha,
        "tree_method": hps.tree_method,
        "max_bin": hps.max_bin,
        "seed": hps.seed,
        "nthread": nthread,
    }
    task = task_of(hps.objective)
    if task == "binary":
        params["scale_pos_weight"] = hps.scale_pos_weight
    if task == "multiclass":
        params["num_class"] = num_class
    metrics = parse_metrics(hps.eval_metric)
    if metrics:
        params["eval_metric"] = metrics
    return params


def output_spec(objective: str, num_class: int | None) -> OutputSpec:
    """What ``predict`` returns for ``objective``."""
    meanings = {
        "binary:logistic": ("probability", "probability of class 1"),
        "binary:logitraw": ("margin", "log-odds of class 1"),
        "binary:hinge": ("label", "predicted class, 0 or 1"),
        "multi:softmax": ("label", "predicted class index, 0..num_class-1"),
        "multi:softprob": ("probabilities", "probability of each class 0..num_class-1"),
    }
    task = task_of(objective)
    name, description = meanings.get(
        objective,
        ("score", "relevance score; higher ranks first")
        if task == "ranking"
        else ("value", "predicted value"),
    )
    shape = [-1, num_class or 0] if objective == "multi:softprob" else [-1]
    return OutputSpec(name=name, dtype="float32", shape=shape, description=description)


class XGBoostPredictor:
    """Predicts with a trained booster; inputs are checked against the signature."""

    def __init__(self, booster: xgb.Booster, signature: Signature) -> None:
        self.booster = booster
        self.signature = signature

    def predict(self, data: Any) -> npt.NDArray[np.float32]:
        """Rows (arrays, sequences, mappings, Arrow or pandas) -> the signature's output."""
        matrix = as_matrix(data, self.signature.feature_names, np.float32)
        return np.asarray(self.booster.inplace_predict(matrix, validate_features=False))


def load(model_dir: str | Path) -> XGBoostPredictor:
    """Load ``model.ubj`` and ``signature.json`` from ``model_dir`` (no pickle)."""
    booster = xgb.Booster()
    booster.load_model(Path(model_dir) / MODEL_FILE)
    return XGBoostPredictor(booster, read_signature(Path(model_dir)))


class _MetricLines(xgb.callback.TrainingCallback):
    """Prints each round's validation results, and the training-set metrics at the end.

    Training-set metrics come once, after the last round, while the booster still holds
    its prediction cache for the training rows (a metric pass, ~15 ms on 1M rows).
    Computing them every round, as ``evals=[(dtrain, "train")]`` would, costs about 10%
    of the training time on 1M rows, which is not cheap enough to be the default.
    """

    def __init__(self, metrics: Metrics, dtrain: xgb.DMatrix, train_at_end: bool) -> None:
        super().__init__()
        self.metrics = metrics
        self.dtrain = dtrain
        self.train_at_end = train_at_end

    def after_iteration(
        self, model: Any, epoch: int, evals_log: xgb.callback.TrainingCallback.EvalsLog
    ) -> bool:
        for data_name, results in evals_log.items():
            for metric, values in results.items():
                last = values[-1]
                value = last[0] if isinstance(last, tuple) else last
                self.metrics.emit(f"{data_name}:{metric}", value, epoch)
        return False

    def after_training(self, model: xgb.Booster) -> xgb.Booster:
        if self.train_at_end:
            step = model.num_boosted_rounds() - 1
            _emit_eval(model, self.dtrain, "train", self.metrics, step)
        return model


def train_booster(
    params: dict[str, Any],
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix | None,
    *,
    num_round: int,
    early_stopping_rounds: int | None,
    metrics: Metrics,
) -> xgb.Booster:
    """Train and return the booster cut at its best round.

    Emits validation metrics every round, then the saved model's training-set metrics
    (and, after early stopping, its validation metrics again) at its last round. Inside
    :func:`collective` (a multi-host job) every host calls this on its shard.
    """
    stopping = early_stopping_rounds is not None
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=num_round,
        evals=[] if dvalid is None else [(dvalid, "validation")],
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
        callbacks=[_MetricLines(metrics, dtrain, train_at_end=not stopping)],
    )
    if stopping:
        assert dvalid is not None
        if booster.best_iteration + 1 < booster.num_boosted_rounds():
            booster = booster[: booster.best_iteration + 1]
        step = booster.num_boosted_rounds() - 1
        # The cut model's metrics are the last lines for their names.
        _emit_eval(booster, dtrain, "train", metrics, step)
        _emit_eval(booster, dvalid, "validation", metrics, step)
    return booster


def _dmatrix(
    split: Split, hps: XGBoostHyperparameters, nthread: int, ref: xgb.DMatrix | None
) -> xgb.DMatrix:
    if hps.tree_method == "hist":
        return xgb.QuantileDMatrix(
            split.features,
            label=split.label,
            qid=split.qid,
            nthread=nthread,
            max_bin=hps.max_bin,
            ref=ref,
        )
    return xgb.DMatrix(split.features, label=split.label, qid=split.qid, nthread=nthread)


def _check_feature_names(data: GbdtData) -> None:
    bad = [n for n in data.columns.features if any(c in n for c in _BAD_NAME_CHARS)]
    if bad:
        raise DataError(
            f"feature column name(s) {', '.join(map(repr, bad))} contain '[', ']' or '<', "
            "which XGBoost does not accept; rename them"
        )


def _emit_eval(
    booster: xgb.Booster, dmatrix: xgb.DMatrix, data_name: str, metrics: Metrics, step: int
) -> None:
    """Emit ``<data_name>:<metric>`` from :meth:`xgboost.Booster.eval` ("[0]\\tname-auc:0.9")."""
    for item in booster.eval(dmatrix, name=data_name).split("\t")[1:]:
        name, _, value = item.rpartition(":")
        metrics.emit(f"{data_name}:" + name.removeprefix(f"{data_name}-"), float(value), step)


def collective(
    contract: Contract, hps: XGBoostHyperparameters
) -> contextlib.AbstractContextManager[Any]:
    """XGBoost's collective for a multi-host job (nothing for one host).

    Checked before data is read: the tracker variables must be set and the tree method
    must be one XGBoost distributes.
    """
    if contract.cluster.size == 1:
        return contextlib.nullcontext()
    if hps.tree_method == "exact":
        raise HyperparameterError(
            "tree_method 'exact' trains on a single host; use 'hist' or 'approx' for a "
            "multi-host job"
        )
    env = contract.data_parallel_env(NAME, [TRACKER_URI_ENV, TRACKER_PORT_ENV])
    try:
        port = int(env[TRACKER_PORT_ENV])
    except ValueError:
        raise HyperparameterError(
            f"{TRACKER_PORT_ENV} must be a port number, got {env[TRACKER_PORT_ENV]!r}"
        ) from None
    return xgb.collective.CommunicatorContext(
        dmlc_tracker_uri=env[TRACKER_URI_ENV],
        dmlc_tracker_port=port,
        dmlc_task_id=contract.cluster.current_host,
    )


def train(contract: Contract) -> None:
    """Validate, read, train, save; see the module docstring for inputs and outputs."""
    hps = contract.hyperparameters(XGBoostHyperparameters)
    task = task_of(hps.objective)
    check_task_hyperparameters(contract, task, hps.objective, hps.group, hps.early_stopping_rounds)
    check_eval_metrics(hps.eval_metric)
    check_multi_host(contract, task, hps.num_class, NAME)
    communicator = collective(contract, hps)
    data = load_gbdt_data(
        contract, hps, algorithm=NAME, task=task, group=hps.group, num_class=hps.num_class
    )
    _check_feature_names(data)
    nthread = hps.nthread or contract.num_cpus
    # Only algo-1 reports; the others' metric values are the same (or their shard's).
    metrics = contract.metrics if contract.is_lead_host else Metrics(quiet=True)
    with communicator:  # the matrices' quantiles and every round are computed together
        dtrain = _dmatrix(data.train, hps, nthread, ref=None)
        dvalid = None
        if data.validation is not None:
            dvalid = _dmatrix(data.validation, hps, nthread, ref=dtrain)
        booster = train_booster(
            booster_params(hps, data.num_class, nthread),
            dtrain,
            dvalid,
            num_round=hps.num_round,
            early_stopping_rounds=hps.early_stopping_rounds,
            metrics=metrics,
        )
    if not contract.is_lead_host:
        return  # algo-1 writes the model
    last_round = booster.num_boosted_rounds() - 1
    signature = Signature(
        algorithm=NAME,
        inputs=data.inputs,
        label=data.label,
        group=data.group,
        output=output_spec(hps.objective, data.num_class),
    )
    contract.model_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(contract.model_dir / MODEL_FILE)
    write_signature(contract, signature)
    if data.test is not None:
        if data.test.label is not None:
            dtest = _dmatrix(data.test, hps, nthread, ref=dtrain)
            _emit_eval(booster, dtest, "test", contract.metrics, last_round)
        predictor = XGBoostPredictor(booster, signature)
        predictions = predictor.predict(data.test.features)
        write_predictions(contract, data.test.in_channel_order(predictions))
    write_metadata(
        contract,
        NAME,
        hps,
        libraries=["xgboost"],
        extra={"task": task, "num_class": data.num_class, "rounds": last_round + 1},
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run :func:`train` under the container contract; returns the exit status.

    ``argv`` and ``environ`` default to the process's own arguments and environment.
    """
    return run_entry_point(NAME, train, argv, environ)


if __name__ == "__main__":
    sys.exit(main())
