"""Model folders written by modelyard's built-in algorithms (``builtin:<algorithm>``).

Such a folder holds the algorithm's non-pickle model files, ``signature.json`` and
``metadata.json``; the algorithm's own ``load(model_dir)`` reads it. The module that
loads it comes from the fixed :data:`~modelyard.algorithms.ALGORITHMS` table, never
from a name in the folder.
"""

from __future__ import annotations

import importlib
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

from modelyard.algorithms import ALGORITHMS
from modelyard.core.paths import collect_files
from modelyard.errors import InvalidInput
from modelyard.flavors._base import Flavor, LoadedModel, LoadOptions, Saved, SaveOptions
from modelyard.flavors._descriptor import (
    MODEL_FILE,
    ModelDescriptor,
    Signature,
    TensorSpec,
)

PREFIX = "builtin:"
METADATA_FILE = "metadata.json"
SIGNATURE_FILE = "signature.json"
_ARROW_TO_DTYPE = {
    "bool": "bool",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "halffloat": "float16",
    "float": "float32",
    "double": "float64",
    "string": "string",
    "large_string": "string",
    "binary": "bytes",
    "large_binary": "bytes",
}
_TASKS = {
    "binary": "classification",
    "multiclass": "classification",
    "regression": "regression",
    "ranking": "ranking",
}


def algorithm_of(folder: Path) -> str | None:
    """The built-in algorithm named by ``folder/metadata.json``, or ``None``."""
    path = folder / METADATA_FILE
    if not path.is_file():
        return None
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    name = metadata.get("algorithm") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) and name in ALGORITHMS else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{str(path)!r} is missing from the built-in model folder") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{str(path)!r} does not hold a JSON object")
    return document


def describe(folder: Path, algorithm: str) -> Saved:
    """Signature, versions, task and classes of a built-in model folder."""
    metadata = _read_json(folder / METADATA_FILE)
    raw = _read_json(folder / SIGNATURE_FILE)
    missing = [f for f in ALGORITHMS[algorithm].model_files if not (folder / f).is_file()]
    if missing:
        raise InvalidInput(
            f"the {algorithm} model folder {str(folder)!r} lacks {', '.join(missing)}"
        )
    inputs = [
        TensorSpec(
            name=str(column.get("name")),
            dtype=_ARROW_TO_DTYPE.get(str(column.get("type")), "float64"),
            shape=[-1],
        )
        for column in raw.get("inputs") or []
        if isinstance(column, dict)
    ]
    outputs = None
    output = raw.get("output")
    if isinstance(output, dict):
        dtype = str(output.get("dtype"))
        shape = output.get("shape")
        outputs = [
            TensorSpec(
                name=str(output.get("name")),
                dtype=dtype if dtype in _ARROW_TO_DTYPE.values() else "float64",
                shape=[int(d) for d in shape] if isinstance(shape, list) else None,
            )
        ]
    libraries = metadata.get("libraries")
    classes = raw.get("classes") if isinstance(raw.get("classes"), list) else None
    task = metadata.get("task")
    return Saved(
        framework={str(k): str(v) for k, v in libraries.items()}
        if isinstance(libraries, dict)
        else {},
        task=_TASKS.get(str(task), str(task)) if task else ("classification" if classes else None),
        classes=classes,
        extra={"algorithm": algorithm},
        signature=Signature(inputs=inputs, outputs=outputs),
    )


class BuiltinFlavor(Flavor):
    """One instance per algorithm, registered as ``builtin:<algorithm>``."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.name = PREFIX + algorithm

    def matches(self, model: Any) -> bool:
        return isinstance(model, (str, Path)) and algorithm_of(Path(model)) == self.algorithm

    def save(self, model: Any, folder: Path, options: SaveOptions) -> Saved:
        if not isinstance(model, (str, Path)) or not Path(model).is_dir():
            raise InvalidInput(
                f"the {self.name} flavor saves the model folder a built-in {self.algorithm} "
                f"job wrote; give its path, not a {type(model).__name__}"
            )
        source = Path(model)
        found = algorithm_of(source)
        if found != self.algorithm:
            raise InvalidInput(
                f"{str(source)!r} is not a {self.algorithm} model folder "
                f"(its metadata.json names {found!r})"
            )
        if source.resolve() != folder.resolve():
            for rel, path in collect_files(source):
                if rel == MODEL_FILE:
                    continue
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, folder / rel)
        saved = describe(folder, self.algorithm)
        saved.predict = self._predictor(folder).predict
        return saved

    def _predictor(self, folder: Path) -> Any:
        module = importlib.import_module(ALGORITHMS[self.algorithm].module)
        try:
            return module.load(folder)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise InvalidInput(
                f"the {self.algorithm} model in {str(folder)!r} does not load: {exc}"
            ) from None

    def load(self, folder: Path, descriptor: ModelDescriptor, options: LoadOptions) -> LoadedModel:
        predictor = self._predictor(folder)
        proba = getattr(predictor, "predict_proba", None)
        return LoadedModel(
            descriptor,
            predictor,
            predictor.predict,
            proba if callable(proba) else None,
            path=folder,
        )
