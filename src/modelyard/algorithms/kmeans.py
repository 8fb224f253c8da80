"""Built-in k-means: ``python -m modelyard.algorithms.kmeans [--name value ...]``.

Clusters the ``train`` channel's rows (every column is a numeric feature) into ``k``
groups with scikit-learn's KMeans (Lloyd iterations, k-means++ or random seeding, the
best of ``n_init`` runs). Features are used as given: scale them beforehand if their
units differ.

Writes to ``SM_MODEL_DIR``: ``model.npz`` (``centroids``, shape (k, features)) and
``model.json``, plus ``signature.json`` and ``metadata.json``. Metric lines (step 0):
``<channel>:msd`` (mean squared distance to the nearest centre) and ``<channel>:ssd``
(their sum) for train, validation and test.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans

from modelyard.algorithms._contract import Contract, DataError, run_entry_point
from modelyard.algorithms._model_files import (
    PARAMS_FILE,
    load_arrays,
    read_signature,
    save_arrays,
    write_json,
    write_metadata,
    write_predictions,
    write_signature,
)
from modelyard.algorithms._schemas import KMeansHyperparameters, OutputSpec, Signature
from modelyard.algorithms._tables import as_matrix, read_numeric

NAME = "kmeans"


class KMeansPredictor:
    """Assigns rows to the nearest centroid (squared Euclidean distance)."""

    def __init__(self, centroids: npt.NDArray[np.float64], signature: Signature) -> None:
        self.centroids = centroids
        self.signature = signature

    def distances(self, data: Any) -> npt.NDArray[np.float64]:
        """Squared distance from each row to each centroid, shape (rows, k)."""
        matrix = as_matrix(data, self.signature.feature_names, np.float64)
        squared = (
            (matrix**2).sum(axis=1)[:, None]
            - 2.0 * matrix @ self.centroids.T
            + (self.centroids**2).sum(axis=1)[None, :]
        )
        return np.asarray(np.maximum(squared, 0.0), dtype=np.float64)

    def predict(self, data: Any) -> npt.NDArray[np.int64]:
        """Index of the nearest centroid for each row, shape (rows,)."""
        return np.asarray(np.argmin(self.distances(data), axis=1), dtype=np.int64)


def load(model_dir: str | Path) -> KMeansPredictor:
    """Load ``model.npz`` and ``signature.json`` (no pickle)."""
    folder = Path(model_dir)
    return KMeansPredictor(load_arrays(folder)["centroids"], read_signature(folder))


def train(contract: Contract) -> None:
    """Validate, read, fit, save; see the module docstring for inputs and outputs."""
    hps = contract.hyperparameters(KMeansHyperparameters)
    contract.require_single_host(NAME)
    data = read_numeric(contract, NAME, label=None, feature_dim=hps.feature_dim)
    x = data.train.features
    if len(x) < hps.k:
        raise DataError(f"k is {hps.k} but channel 'train' has only {len(x)} rows")
    model = KMeans(
        n_clusters=hps.k,
        init=hps.init,
        max_iter=hps.max_iter,
        n_init=hps.n_init,
        tol=hps.tol,
        random_state=hps.seed,
    ).fit(x)
    centroids = np.asarray(model.cluster_centers_, dtype=np.float64)
    signature = Signature(
        algorithm=NAME,
        inputs=data.inputs,
        output=OutputSpec(
            name="cluster", dtype="int64", shape=[-1], description="index of the nearest centre"
        ),
    )
    predictor = KMeansPredictor(centroids, signature)
    for split in (data.train, data.validation, data.test):
        if split is not None:
            nearest = predictor.distances(split.features).min(axis=1)
            contract.metrics.emit(f"{split.name}:msd", float(nearest.mean()))
            contract.metrics.emit(f"{split.name}:ssd", float(nearest.sum()))
    save_arrays(contract.model_dir, {"centroids": centroids})
    write_json(
        contract.model_dir / PARAMS_FILE,
        {"k": hps.k, "features": signature.feature_names, "iterations": int(model.n_iter_)},
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
