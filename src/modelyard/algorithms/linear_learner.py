"""Built-in linear learner: ``python -m modelyard.algorithms.linear_learner [--name value ...]``.

Regularised linear regression or logistic regression (binary or multinomial) on the
``train`` channel's numeric features, fitted with scikit-learn (LinearRegression, Ridge,
Lasso, ElasticNet, LogisticRegression), with the features standardised first unless
``normalize_data`` is false. ``l1`` and ``wd`` mean the same for every predictor type: the
objective is ``mean(loss) + l1 * |w|_1 + wd / 2 * |w|_2^2``.

Writes to ``SM_MODEL_DIR``: ``model.npz`` (``coef`` (outputs, features), ``intercept``,
the scaler's ``mean`` and ``scale``, and ``classes`` for classifiers) and ``model.json``,
plus ``signature.json`` and ``metadata.json``. Metric lines (step 0): accuracy and log_loss
for classifiers, mse and r2 for the regressor, on train, validation and test.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge

from modelyard.algorithms._contract import Contract, DataError, run_entry_point
from modelyard.algorithms._model_files import (
    PARAMS_FILE,
    load_arrays,
    read_json,
    read_signature,
    save_arrays,
    write_json,
    write_metadata,
    write_predictions,
    write_signature,
)
from modelyard.algorithms._schemas import LinearLearnerHyperparameters, OutputSpec, Signature
from modelyard.algorithms._tables import (
    NumericSplit,
    as_matrix,
    class_labels,
    numeric_labels,
    read_numeric,
)

NAME = "linear_learner"


class LinearPredictor:
    """``(x - mean) / scale @ coef.T + intercept``, then identity, sigmoid or softmax."""

    def __init__(
        self, arrays: dict[str, npt.NDArray[Any]], predictor_type: str, signature: Signature
    ) -> None:
        self.coef: npt.NDArray[np.float64] = arrays["coef"]
        self.intercept: npt.NDArray[np.float64] = arrays["intercept"]
        self.mean: npt.NDArray[np.float64] = arrays["mean"]
        self.scale: npt.NDArray[np.float64] = arrays["scale"]
        self.classes: npt.NDArray[Any] | None = arrays.get("classes")
        self.predictor_type = predictor_type
        self.signature = signature

    def decision_function(self, data: Any) -> npt.NDArray[np.float64]:
        """Linear scores, shape (rows, outputs)."""
        matrix = as_matrix(data, self.signature.feature_names, np.float64)
        return ((matrix - self.mean) / self.scale) @ self.coef.T + self.intercept

    def predict_proba(self, data: Any) -> npt.NDArray[np.float64]:
        """Class probabilities, shape (rows, classes), columns in ``classes`` order."""
        if self.predictor_type == "regressor":
            raise TypeError("a regressor has no class probabilities")
        scores = self.decision_function(data)
        if scores.shape[1] == 1:
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float64)

    def predict(self, data: Any) -> npt.NDArray[Any]:
        """Predicted labels (classifiers) or values (regressor), shape (rows,)."""
        if self.predictor_type == "regressor":
            return self.decision_function(data)[:, 0]
        assert self.classes is not None
        return np.asarray(self.classes[np.argmax(self.predict_proba(data), axis=1)])


def load(model_dir: str | Path) -> LinearPredictor:
    """Load ``model.npz``, ``model.json`` and ``signature.json`` (no pickle)."""
    folder = Path(model_dir)
    params = read_json(folder / PARAMS_FILE)
    return LinearPredictor(load_arrays(folder), params["predictor_type"], read_signature(folder))


def _estimator(hps: LinearLearnerHyperparameters, rows: int) -> Any:
    """The scikit-learn estimator whose objective is mean(loss) + l1|w|_1 + wd/2 |w|^2."""
    l1, wd = hps.l1, hps.wd
    if hps.predictor_type == "regressor":
        if l1 == 0 and wd == 0:
            return LinearRegression()
        if l1 == 0:
            return Ridge(alpha=rows * wd, tol=hps.tol, max_iter=hps.max_iter)
        if wd == 0:
            return Lasso(alpha=l1, tol=hps.tol, max_iter=hps.max_iter)
        return ElasticNet(
            alpha=l1 + wd, l1_ratio=l1 / (l1 + wd), tol=hps.tol, max_iter=hps.max_iter
        )
    strength = l1 + wd
    return LogisticRegression(
        C=np.inf if strength == 0 else 1.0 / (rows * strength),
        l1_ratio=0.0 if strength == 0 else l1 / strength,
        solver="saga" if l1 > 0 else "lbfgs",
        tol=hps.tol,
        max_iter=hps.max_iter,
    )


def _targets(hps: LinearLearnerHyperparameters, split: NumericSplit) -> npt.NDArray[Any]:
    assert split.label is not None
    if hps.predictor_type == "regressor":
        return numeric_labels(split.label, split.name, NAME)
    return class_labels(split.label)


def _check_classes(hps: LinearLearnerHyperparameters, classes: npt.NDArray[Any]) -> None:
    count = len(classes)
    if hps.predictor_type == "binary_classifier" and count != 2:
        raise DataError(
            f"binary_classifier needs exactly 2 label values in channel 'train'; found {count}"
            f" ({', '.join(map(str, classes[:10]))}); use multiclass_classifier for more"
        )
    if hps.predictor_type == "multiclass_classifier":
        if count < 2:
            raise DataError(f"multiclass_classifier needs 2 or more classes; found {count}")
        if hps.num_classes is not None and hps.num_classes != count:
            raise DataError(
                f"num_classes is {hps.num_classes} but channel 'train' has {count} classes"
            )


def _emit_metrics(
    contract: Contract,
    predictor: LinearPredictor,
    split: NumericSplit,
    target: npt.NDArray[Any],
) -> None:
    if predictor.predictor_type == "regressor":
        error = predictor.predict(split.features) - target
        variance = float(np.var(target))
        contract.metrics.emit(f"{split.name}:mse", float(np.mean(error**2)))
        r2 = 1.0 - float(np.mean(error**2)) / variance if variance > 0 else 0.0
        contract.metrics.emit(f"{split.name}:r2", r2)
        return
    assert predictor.classes is not None
    proba = predictor.predict_proba(split.features)
    lookup = {value: i for i, value in enumerate(predictor.classes.tolist())}
    index = np.array([lookup.get(value, -1) for value in target.tolist()], dtype=np.int64)
    # A label the training data never had gets probability 0 (log loss clipped at 1e-15).
    picked = np.where(index >= 0, proba[np.arange(len(target)), np.maximum(index, 0)], 0.0)
    accuracy = float(np.mean(np.argmax(proba, axis=1) == index))
    log_loss = float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0))))
    contract.metrics.emit(f"{split.name}:accuracy", accuracy)
    contract.metrics.emit(f"{split.name}:log_loss", log_loss)


def train(contract: Contract) -> None:
    """Validate, read, fit, save; see the module docstring for inputs and outputs."""
    hps = contract.hyperparameters(LinearLearnerHyperparameters)
    contract.require_single_host(NAME)
    data = read_numeric(contract, NAME, label=hps.label, label_index=hps.label_column_index)
    x = data.train.features
    y = _targets(hps, data.train)
    if hps.normalize_data:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
    else:
        mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    arrays: dict[str, npt.NDArray[Any]] = {"mean": mean, "scale": scale}
    if hps.predictor_type != "regressor":
        classes = np.unique(y)
        _check_classes(hps, classes)
        arrays["classes"] = classes
    estimator = _estimator(hps, len(x))
    estimator.fit((x - mean) / scale, y)
    arrays["coef"] = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    arrays["intercept"] = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
    classes_out = arrays.get("classes")
    output = (
        OutputSpec(name="value", dtype="float64", shape=[-1], description="predicted value")
        if hps.predictor_type == "regressor"
        else OutputSpec(
            name="label",
            dtype=str(classes_out.dtype) if classes_out is not None else "float64",
            shape=[-1],
            description="predicted class; predict_proba gives (rows, classes) probabilities",
        )
    )
    signature = Signature(
        algorithm=NAME,
        inputs=data.inputs,
        label=data.label,
        output=output,
        classes=classes_out.tolist() if classes_out is not None else None,
    )
    predictor = LinearPredictor(arrays, hps.predictor_type, signature)
    for split in (data.train, data.validation, data.test):
        if split is not None and split.label is not None:
            _emit_metrics(contract, predictor, split, _targets(hps, split))
    save_arrays(contract.model_dir, arrays)
    write_json(
        contract.model_dir / PARAMS_FILE,
        {
            "predictor_type": hps.predictor_type,
            "estimator": type(estimator).__name__,
            "features": signature.feature_names,
            "standardised": hps.normalize_data,
        },
    )
    write_signature(contract, signature)
    if data.test is not None:
        write_predictions(contract, predictor.predict(data.test.features))
    write_metadata(contract, NAME, hps, libraries=["scikit-learn"])


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run :func:`train` under the container contract; returns the exit status.

    ``argv`` and ``environ`` default to the process's own arguments and environment.
    """
    return run_entry_point(NAME, train, argv, environ)


if __name__ == "__main__":
    sys.exit(main())
