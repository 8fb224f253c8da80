"""Built-in k-nearest neighbours: ``python -m modelyard.algorithms.knn [--name value ...]``.

Keeps the ``train`` channel's rows (or a random ``sample_size`` of them) and their labels;
a prediction is the majority label (classifier; ties go to the smallest label) or the
mean label (regressor) of the ``k`` nearest stored rows by Euclidean (``L2``) or cosine
distance, computed with scikit-learn's neighbour search.

Writes to ``SM_MODEL_DIR``: ``model.npz`` (``points`` (rows, features) and ``labels``) and
``model.json``, plus ``signature.json`` and ``metadata.json``. Metric lines (step 0):
``<channel>:accuracy`` (classifier) or ``<channel>:mse`` (regressor) for validation and
test.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

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
from modelyard.algorithms._schemas import KNNHyperparameters, OutputSpec, Signature
from modelyard.algorithms._tables import as_matrix, class_labels, numeric_labels, read_numeric

NAME = "knn"


class KNNPredictor:
    """Neighbour search over the stored rows; rebuilding the index involves no fitting."""

    def __init__(
        self,
        points: npt.NDArray[np.float64],
        labels: npt.NDArray[Any],
        params: dict[str, Any],
        signature: Signature,
    ) -> None:
        self.points = points
        self.labels = labels
        self.params = params
        self.signature = signature
        cosine = params["index_metric"] == "COSINE"
        options: dict[str, Any] = {
            "n_neighbors": params["k"],
            "metric": "cosine" if cosine else "euclidean",
            "algorithm": "brute" if cosine else "auto",
        }
        self._search = (
            KNeighborsClassifier(**options)
            if params["predictor_type"] == "classifier"
            else KNeighborsRegressor(**options)
        ).fit(points, labels)

    def predict(self, data: Any) -> npt.NDArray[Any]:
        """Majority or mean label of the k nearest stored rows, shape (rows,)."""
        matrix = as_matrix(data, self.signature.feature_names, np.float64)
        return np.asarray(self._search.predict(matrix))


def load(model_dir: str | Path) -> KNNPredictor:
    """Load ``model.npz``, ``model.json`` and ``signature.json`` (no pickle)."""
    folder = Path(model_dir)
    arrays = load_arrays(folder)
    params = read_json(folder / PARAMS_FILE)
    return KNNPredictor(arrays["points"], arrays["labels"], params, read_signature(folder))


def _labels(hps: KNNHyperparameters, label: npt.NDArray[Any], channel: str) -> npt.NDArray[Any]:
    if hps.predictor_type == "regressor":
        return numeric_labels(label, channel, NAME)
    return class_labels(label)


def train(contract: Contract) -> None:
    """Validate, read, store the points, save; see the module docstring."""
    hps = contract.hyperparameters(KNNHyperparameters)
    contract.require_single_host(NAME)
    data = read_numeric(contract, NAME, label=hps.label, label_index=hps.label_column_index)
    assert data.train.label is not None
    points = data.train.features
    labels = _labels(hps, data.train.label, "train")
    if hps.sample_size is not None and hps.sample_size < len(points):
        keep = np.sort(
            np.random.default_rng(hps.seed).choice(len(points), hps.sample_size, replace=False)
        )
        points, labels = points[keep], labels[keep]
    if hps.k > len(points):
        raise DataError(f"k is {hps.k} but only {len(points)} training rows are kept")
    params = {
        "k": hps.k,
        "predictor_type": hps.predictor_type,
        "index_metric": hps.index_metric,
        "features": [spec.name for spec in data.inputs],
    }
    classifier = hps.predictor_type == "classifier"
    signature = Signature(
        algorithm=NAME,
        inputs=data.inputs,
        label=data.label,
        output=OutputSpec(
            name="label" if classifier else "value",
            dtype=str(labels.dtype),
            shape=[-1],
            description="majority label of the k nearest rows"
            if classifier
            else "mean label of the k nearest rows",
        ),
        classes=np.unique(labels).tolist() if classifier else None,
    )
    predictor = KNNPredictor(points, labels, params, signature)
    for split in (data.validation, data.test):
        if split is not None and split.label is not None:
            predicted = predictor.predict(split.features)
            target = _labels(hps, split.label, split.name)
            if classifier:
                contract.metrics.emit(f"{split.name}:accuracy", float(np.mean(predicted == target)))
            else:
                contract.metrics.emit(
                    f"{split.name}:mse", float(np.mean((predicted - target) ** 2))
                )
    save_arrays(contract.model_dir, {"points": points, "labels": labels})
    write_json(contract.model_dir / PARAMS_FILE, params)
    write_signature(contract, signature)
    if data.test is not None:
        write_predictions(contract, predictor.predict(data.test.features))
    write_metadata(
        contract, NAME, hps, libraries=["scikit-learn"], extra={"stored_rows": len(points)}
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run :func:`train` under the container contract; returns the exit status.

    ``argv`` and ``environ`` default to the process's own arguments and environment.
    """
    return run_entry_point(NAME, train, argv, environ)


if __name__ == "__main__":
    sys.exit(main())
