"""Pickle, joblib and cloudpickle files: accepted only when explicitly allowed.

Unpickling runs whatever code the file names, so this flavor is refused unless the
caller opts in twice: ``allow_pickle=True`` to save, and to load both
``allow_pickle=True`` and ``expected_digests`` holding the registry's SHA-256 of the
pickle file, which must match the file. A file nobody registered, or one replaced after
registration, is never unpickled.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput, UntrustedModel
from modelyard.flavors._base import (
    Flavor,
    LoadedModel,
    LoadOptions,
    Saved,
    SaveOptions,
    json_classes,
    require,
    type_modules,
)
from modelyard.flavors._descriptor import ModelDescriptor, sha256_file
from modelyard.flavors._sklearn import predictors as sklearn_predictors

SUFFIXES = {".pkl": "pickle", ".pickle": "pickle", ".joblib": "joblib"}
FILES = ("model.joblib", "model.pkl")


def _is_path(model: Any) -> bool:
    return isinstance(model, (str, Path)) and Path(model).suffix in SUFFIXES


class PickleFlavor(Flavor):
    name = "pickle"
    libraries = ("joblib", "cloudpickle")

    def matches(self, model: Any) -> bool:
        return _is_path(model)

    def save(self, model: Any, folder: Path, options: SaveOptions) -> Saved:
        if not options.allow_pickle:
            raise UntrustedModel(
                "saving as pickle needs allow_pickle=True: a pickle runs arbitrary code when "
                "loaded; prefer a safe flavor (sklearn/skops, xgboost, lightgbm, onnx, "
                "torchscript) where one fits"
            )
        if _is_path(model):
            source = Path(model)
            if not source.is_file():
                raise InvalidInput(f"pickle file {str(source)!r} does not exist")
            serializer = SUFFIXES[source.suffix]
            target = folder / ("model.joblib" if serializer == "joblib" else "model.pkl")
            shutil.copyfile(source, target)
            return Saved(framework=self.versions(), extra={"serializer": serializer})
        joblib = require("joblib", self.name, "pip install joblib")
        joblib.dump(model, folder / "model.joblib")
        classes = getattr(model, "classes_", None)
        predict, _proba = _predictors(model)
        return Saved(
            framework=self.versions(),
            classes=json_classes(classes) if classes is not None else None,
            task="classification" if classes is not None else None,
            extra={
                "serializer": "joblib",
                "type": f"{type(model).__module__}.{type(model).__qualname__}",
            },
            predict=predict,
        )

    def load(self, folder: Path, descriptor: ModelDescriptor, options: LoadOptions) -> LoadedModel:
        names = [name for name in FILES if name in descriptor.files]
        if len(names) != 1:
            raise InvalidInput(
                f"a pickle model lists exactly one of {', '.join(FILES)}; this one lists "
                f"{', '.join(names) or 'none'}"
            )
        name = names[0]
        path = folder / name
        vouch(name, "a pickle", options, lambda: sha256_file(path))
        if name == "model.joblib":
            model = require("joblib", self.name, "pip install joblib").load(path)
        else:
            with open(path, "rb") as handle:
                model = pickle.load(handle)
        predict, proba = _predictors(model)
        return LoadedModel(descriptor, model, predict, proba, path=folder)


def vouch(name: str, kind: str, options: LoadOptions, digest: Callable[[], str]) -> None:
    """Raise UntrustedModel unless the caller may unpickle the file ``name``.

    It may when ``options`` allow pickle and hold the registry's SHA-256 of ``name``,
    equal to ``digest()`` (called only then). ``kind`` says what the file is, for the
    message ("a pickle"). Every flavor that unpickles goes through this one check.
    """
    if not options.allow_pickle:
        raise UntrustedModel(
            f"{name} is {kind}, which runs arbitrary code when loaded; it is loaded only "
            "with allow_pickle=True and the registry's digest in expected_digests"
        )
    expected = options.expected_digests.get(name)
    if not expected:
        raise UntrustedModel(
            f"{name} is {kind}: loading it needs the registry's SHA-256 of {name} in "
            "expected_digests (allow_pickle=True alone is not enough)"
        )
    actual = digest()
    if actual != expected.lower():
        raise UntrustedModel(
            f"{name} has SHA-256 {actual}, not the registry's {expected}; it was not unpickled"
        )


def _predictors(model: Any) -> tuple[Any, Any]:
    if not callable(getattr(model, "predict", None)) and not callable(model):
        raise InvalidInput(f"the unpickled {type(model).__name__} has no predict method")
    if "sklearn" in type_modules(model):
        return sklearn_predictors(model)  # same input handling as the sklearn flavor

    def predict(data: Any) -> Any:
        fn = model.predict if hasattr(model, "predict") else model
        return np.asarray(fn(data))

    proba = None
    if hasattr(model, "predict_proba"):

        def proba(data: Any) -> Any:
            return np.asarray(model.predict_proba(data))

    return predict, proba
