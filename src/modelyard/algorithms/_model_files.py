"""What every algorithm writes besides its model: signature, metadata, arrays, predictions.

``SM_MODEL_DIR`` receives ``signature.json`` (:class:`~._schemas.Signature`),
``metadata.json`` (algorithm, hyperparameters as used, final metrics, library versions,
model files) and, for the algorithms whose model is plain arrays, ``model.npz`` (loaded
with ``allow_pickle=False``) beside ``model.json`` (scalars and names). Nothing here
writes or reads pickle.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

from modelyard.algorithms._contract import Contract
from modelyard.algorithms._schemas import ALGORITHMS, Hyperparameters, Signature

SIGNATURE_FILE = "signature.json"
METADATA_FILE = "metadata.json"
ARRAYS_FILE = "model.npz"
PARAMS_FILE = "model.json"
PREDICTIONS_FILE = "predictions.csv"


def write_json(path: Path, document: Any) -> None:
    """Write ``document`` as indented UTF-8 JSON (NaN is not valid JSON and is refused)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def library_versions(distributions: Sequence[str]) -> dict[str, str]:
    """Installed versions of ``distributions`` plus Python's, for ``metadata.json``."""
    versions = {"python": platform.python_version()}
    for name in ("modelyard", "numpy", "pyarrow", *distributions):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_signature(contract: Contract, signature: Signature) -> None:
    write_json(contract.model_dir / SIGNATURE_FILE, signature.model_dump(mode="json"))


def read_signature(model_dir: Path) -> Signature:
    return Signature.model_validate(read_json(Path(model_dir) / SIGNATURE_FILE))


def write_metadata(
    contract: Contract,
    algorithm: str,
    hyperparameters: Hyperparameters,
    *,
    libraries: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """``metadata.json``: hyperparameters as used, the final metrics, versions and files."""
    document: dict[str, Any] = {
        "algorithm": algorithm,
        "created_at": datetime.now(UTC).isoformat(),
        "hyperparameters": hyperparameters.model_dump(mode="json", by_alias=True),
        "metrics": {name: _json_number(value) for name, value in contract.metrics.final.items()},
        "libraries": library_versions(libraries),
        "model_files": list(ALGORITHMS[algorithm].model_files),
    }
    document.update(extra or {})
    write_json(contract.model_dir / METADATA_FILE, document)


def _json_number(value: float) -> float | str:
    return value if np.isfinite(value) else str(value)


def save_arrays(model_dir: Path, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
    """``model.npz`` from plain numeric or fixed-width string arrays (never objects)."""
    for name, array in arrays.items():
        if array.dtype == object:
            raise TypeError(f"array {name!r} has dtype object, which would need pickle")
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / ARRAYS_FILE, "wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)


def load_arrays(model_dir: Path) -> dict[str, npt.NDArray[Any]]:
    with np.load(Path(model_dir) / ARRAYS_FILE, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def write_predictions(contract: Contract, predictions: npt.NDArray[Any]) -> Path:
    """``$SM_OUTPUT_DATA_DIR/predictions.csv``: one row per test row, a header row.

    A 1-D result is one ``prediction`` column; a 2-D result has ``prediction_0``, ...
    """
    if predictions.ndim == 1:
        columns = {"prediction": predictions}
    else:
        columns = {f"prediction_{j}": predictions[:, j] for j in range(predictions.shape[1])}
    path = contract.output_data_dir / PREDICTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(pa.table(columns), path)
    return path
