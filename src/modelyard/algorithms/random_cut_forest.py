"""Built-in anomaly detection: ``python -m modelyard.algorithms.random_cut_forest``.

This is an **Isolation Forest** (scikit-learn's ``IsolationForest``), not Amazon's Random
Cut Forest: it keeps SageMaker RCF's interface (``num_trees``, ``num_samples_per_tree``,
``feature_dim``; higher score = more anomalous) but the trees split on a uniformly random
feature, not one chosen in proportion to its range, and the score is the isolation
score ``2 ** (-mean path length / c(n))`` in (0, 1] rather than RCF's collusive
displacement. Scores are comparable within one model, not with SageMaker RCF's.

Reads numeric features from ``train`` (required), ``validation`` and ``test`` (optional);
a column named by ``label`` (0 = normal, 1 = anomaly) is excluded from the features and
used only for metrics. Writes to ``SM_MODEL_DIR``: ``model.skops`` (skops format, loaded
with an explicit list of trusted types), ``signature.json`` and ``metadata.json``. Metric
lines (step 0): ``<channel>:mean_score``, and ``<channel>:auc`` where labels are given.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from modelyard.algorithms._contract import Contract, DataError, run_entry_point
from modelyard.algorithms._model_files import (
    read_signature,
    write_metadata,
    write_predictions,
    write_signature,
)
from modelyard.algorithms._schemas import OutputSpec, RandomCutForestHyperparameters, Signature
from modelyard.algorithms._tables import NumericSplit, as_matrix, read_numeric
from modelyard.flavors._sklearn import import_skops

NAME = "random_cut_forest"
MODEL_FILE = "model.skops"
# Types skops does not trust by default that an IsolationForest needs. Never read from
# the file being loaded: a model holding anything else fails to load.
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


class AnomalyPredictor:
    """Anomaly scores in (0, 1]: higher means easier to isolate, i.e. more anomalous."""

    def __init__(self, forest: IsolationForest, signature: Signature) -> None:
        self.forest = forest
        self.signature = signature

    def predict(self, data: Any) -> npt.NDArray[np.float64]:
        """One anomaly score per row, shape (rows,)."""
        matrix = as_matrix(data, self.signature.feature_names, np.float64)
        return np.asarray(-self.forest.score_samples(matrix), dtype=np.float64)


def load(model_dir: str | Path) -> AnomalyPredictor:
    """Load ``model.skops`` (trusting only :data:`TRUSTED_TYPES` beyond skops' defaults)."""
    folder = Path(model_dir)
    forest = import_skops().load(folder / MODEL_FILE, trusted=TRUSTED_TYPES)
    if not isinstance(forest, IsolationForest):
        raise ValueError(f"{folder / MODEL_FILE} holds a {type(forest).__name__}, not a forest")
    return AnomalyPredictor(forest, read_signature(folder))


def _auc(scores: npt.NDArray[np.float64], labels: npt.NDArray[Any]) -> float | None:
    """ROC AUC of the scores against 0/1 labels; None when only one class is present."""
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def _check_labels(split: NumericSplit) -> None:
    if split.label is None:
        return
    if split.label.dtype.kind not in "fiu" or not np.isin(split.label, (0, 1)).all():
        raise DataError(
            f"anomaly label column in channel '{split.name}' must hold 0 (normal) or 1 (anomaly)"
        )


def train(contract: Contract) -> None:
    """Validate, read, fit, save; see the module docstring for inputs and outputs."""
    hps = contract.hyperparameters(RandomCutForestHyperparameters)
    contract.require_single_host(NAME)
    data = read_numeric(
        contract, NAME, label=hps.label, label_required=False, feature_dim=hps.feature_dim
    )
    splits = [s for s in (data.train, data.validation, data.test) if s is not None]
    for split in splits:
        _check_labels(split)
    forest = IsolationForest(
        n_estimators=hps.num_trees,
        max_samples=min(hps.num_samples_per_tree, len(data.train.features)),
        random_state=hps.seed,
        n_jobs=contract.num_cpus,
    ).fit(data.train.features)
    signature = Signature(
        algorithm=NAME,
        inputs=data.inputs,
        label=data.label,
        output=OutputSpec(
            name="score",
            dtype="float64",
            shape=[-1],
            description="anomaly score in (0, 1]; higher = more anomalous (Isolation Forest)",
        ),
    )
    predictor = AnomalyPredictor(forest, signature)
    for split in splits:
        scores = predictor.predict(split.features)
        contract.metrics.emit(f"{split.name}:mean_score", float(scores.mean()))
        auc = _auc(scores, split.label) if split.label is not None else None
        if auc is not None:
            contract.metrics.emit(f"{split.name}:auc", auc)
    contract.model_dir.mkdir(parents=True, exist_ok=True)
    import_skops().dump(forest, contract.model_dir / MODEL_FILE)
    write_signature(contract, signature)
    if data.test is not None:
        write_predictions(contract, predictor.predict(data.test.features))
    write_metadata(
        contract, NAME, hps, libraries=["scikit-learn", "skops"], extra={"model": "IsolationForest"}
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run :func:`train` under the container contract; returns the exit status.

    ``argv`` and ``environ`` default to the process's own arguments and environment.
    """
    return run_entry_point(NAME, train, argv, environ)


if __name__ == "__main__":
    sys.exit(main())
