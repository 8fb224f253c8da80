"""Built-in PCA: ``python -m modelyard.algorithms.pca [--name value ...]``.

Finds the ``num_components`` principal components of the ``train`` channel's rows (every
column is a numeric feature; rows are centred, not scaled) with scikit-learn's PCA: an
exact SVD (``regular``) or a randomised one (``randomized``) for large inputs.

Writes to ``SM_MODEL_DIR``: ``model.npz`` (``components`` (num_components, features),
``mean``, ``explained_variance``, ``explained_variance_ratio``, ``singular_values``) and
``model.json``, plus ``signature.json`` and ``metadata.json``. Metric lines (step 0):
``train:explained_variance_ratio`` (the kept share of the variance) and
``<channel>:reconstruction_mse`` for train, validation and test.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.decomposition import PCA

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
from modelyard.algorithms._schemas import OutputSpec, PCAHyperparameters, Signature
from modelyard.algorithms._tables import as_matrix, read_numeric

NAME = "pca"


class PCAPredictor:
    """Projects rows on the principal components: ``(x - mean) @ components.T``."""

    def __init__(
        self,
        components: npt.NDArray[np.float64],
        mean: npt.NDArray[np.float64],
        signature: Signature,
    ) -> None:
        self.components = components
        self.mean = mean
        self.signature = signature

    def predict(self, data: Any) -> npt.NDArray[np.float64]:
        """Projections, shape (rows, num_components)."""
        matrix = as_matrix(data, self.signature.feature_names, np.float64)
        return np.asarray((matrix - self.mean) @ self.components.T, dtype=np.float64)

    def reconstruct(self, projections: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Rows back in feature space from their projections."""
        return np.asarray(projections @ self.components + self.mean, dtype=np.float64)


def load(model_dir: str | Path) -> PCAPredictor:
    """Load ``model.npz`` and ``signature.json`` (no pickle)."""
    folder = Path(model_dir)
    arrays = load_arrays(folder)
    return PCAPredictor(arrays["components"], arrays["mean"], read_signature(folder))


def train(contract: Contract) -> None:
    """Validate, read, fit, save; see the module docstring for inputs and outputs."""
    hps = contract.hyperparameters(PCAHyperparameters)
    contract.require_single_host(NAME)
    data = read_numeric(contract, NAME, label=None, feature_dim=hps.feature_dim)
    x = data.train.features
    limit = min(x.shape)
    if hps.num_components > limit:
        raise DataError(
            f"num_components is {hps.num_components} but channel 'train' has {x.shape[0]} "
            f"rows and {x.shape[1]} features; at most {limit} components exist"
        )
    model = PCA(
        n_components=hps.num_components,
        svd_solver="full" if hps.algorithm_mode == "regular" else "randomized",
        random_state=hps.seed,
    ).fit(x)
    arrays = {
        "components": np.asarray(model.components_, dtype=np.float64),
        "mean": np.asarray(model.mean_, dtype=np.float64),
        "explained_variance": np.asarray(model.explained_variance_, dtype=np.float64),
        "explained_variance_ratio": np.asarray(model.explained_variance_ratio_, dtype=np.float64),
        "singular_values": np.asarray(model.singular_values_, dtype=np.float64),
    }
    signature = Signature(
        algorithm=NAME,
        inputs=data.inputs,
        output=OutputSpec(
            name="projection",
            dtype="float64",
            shape=[-1, hps.num_components],
            description="coordinates on the principal components, largest variance first",
        ),
    )
    predictor = PCAPredictor(arrays["components"], arrays["mean"], signature)
    contract.metrics.emit(
        "train:explained_variance_ratio", float(arrays["explained_variance_ratio"].sum())
    )
    for split in (data.train, data.validation, data.test):
        if split is not None:
            rebuilt = predictor.reconstruct(predictor.predict(split.features))
            mse = float(np.mean((split.features - rebuilt) ** 2))
            contract.metrics.emit(f"{split.name}:reconstruction_mse", mse)
    save_arrays(contract.model_dir, arrays)
    write_json(
        contract.model_dir / PARAMS_FILE,
        {"num_components": hps.num_components, "features": signature.feature_names},
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
