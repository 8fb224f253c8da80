"""scikit-learn models in skops format, loaded against a server-side allow-list of types.

skops refuses any type it does not trust by default unless the caller lists it. The
list passed here is built only from this module's :data:`DEFAULT_TRUSTED_TYPES`, the
``MODELYARD_TRUSTED_TYPES`` setting and the ``trusted_types`` argument of
``load_model`` — never from the types the file itself says it contains — so a file
holding anything else (a class defined by whoever wrote the file, a function, an
arbitrary callable) is refused before any of it is constructed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.config import Settings
from modelyard.errors import InvalidInput, UntrustedModel
from modelyard.flavors._base import (
    Flavor,
    LoadedModel,
    LoadOptions,
    Saved,
    SaveOptions,
    json_classes,
    one_file,
    require,
    type_modules,
)
from modelyard.flavors._descriptor import ModelDescriptor
from modelyard.flavors._signature import as_columns, as_matrix
from modelyard.flavors._sklearn_checks import check_loaded

FILE = "model.skops"
_INSTALL = "pip install scikit-learn skops"

# Beyond skops' own defaults (every public scikit-learn estimator and transformer, NumPy
# arrays, dtypes and random states, the SciPy sparse matrices and arrays, builtin
# containers and collections.OrderedDict): scikit-learn internals that fitted models of
# common estimators hold. Each is a data holder whose state skops restores field by field;
# the ones that hold raw indices (trees, neighbour trees) are checked structurally after
# loading (see _sklearn_checks), which is why they can be trusted when skops alone does not.
DEFAULT_TRUSTED_TYPES: tuple[str, ...] = (
    "collections.OrderedDict",
    "collections.defaultdict",
    # HistGradientBoosting with categorical features keeps partial(check_array); skops
    # checks the function inside a partial on its own, so this trusts no other callable.
    "functools.partial",
    "sklearn.utils.validation.check_array",
    "sklearn.utils._bunch.Bunch",  # a dict with attribute access (stacking, voting)
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.EuclideanDistance32",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance32",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance32",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance32",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.link.HalfLogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.Interval",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.PinballLoss",
    "sklearn._loss.loss.HuberLoss",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.loss.HalfGammaLoss",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.ExponentialLoss",
)


def trusted_types(extra: Sequence[str] = ()) -> list[str]:
    """The allow-list: built-in types, then the setting, then ``extra``; no duplicates."""
    merged: dict[str, None] = {}
    for name in (*DEFAULT_TRUSTED_TYPES, *Settings.from_env().trusted_types, *extra):
        if not isinstance(name, str) or not name or "." not in name:
            raise InvalidInput(
                f"trusted type {name!r} must be a fully qualified name such as "
                "'sklearn.tree._tree.Tree'"
            )
        merged.setdefault(name, None)
    return list(merged)


def _task(estimator: Any) -> str | None:
    kind = getattr(estimator, "_estimator_type", None)
    if kind is None:
        try:
            kind = estimator.__sklearn_tags__().estimator_type
        except (AttributeError, TypeError):
            kind = None
    return (
        {
            "classifier": "classification",
            "regressor": "regression",
            "clusterer": "clustering",
            "outlier_detector": "anomaly_detection",
            "density_estimator": "density_estimation",
        }.get(str(kind))
        if kind
        else None
    )


def predictors(estimator: Any, order: list[str] | None = None) -> tuple[Any, Any]:
    """``predict`` and ``predict_proba`` (or None) taking any supported data format.

    Models fitted on a DataFrame get a DataFrame with their own column names; others get
    a matrix in ``order`` (the signature's columns) or the data's own column order. A
    single column of text goes in as a 1-D array, as text pipelines expect.
    """
    names = getattr(estimator, "feature_names_in_", None)
    feature_names = [str(n) for n in names] if names is not None else None

    def convert(data: Any) -> Any:
        columns = as_columns(data)
        if columns is None:
            array = np.asarray(data)
            if feature_names is not None and array.ndim == 2:
                if array.shape[1] != len(feature_names):
                    raise InvalidInput(
                        f"rows have {array.shape[1]} values, the model reads "
                        f"{len(feature_names)} ({', '.join(feature_names[:10])})"
                    )
                # Positional rows are in the training column order; naming them keeps
                # scikit-learn from warning about missing feature names on every call.
                pandas = require("pandas", "sklearn", "pip install pandas")
                return pandas.DataFrame(array, columns=feature_names)
            return array
        if feature_names is not None:
            pandas = require("pandas", "sklearn", "pip install pandas")
            missing = [n for n in feature_names if n not in columns]
            if missing:
                raise InvalidInput(f"missing column(s) {', '.join(map(repr, missing))}")
            return pandas.DataFrame({n: columns[n] for n in feature_names})
        if len(columns) == 1:
            only = next(iter(columns.values()))
            if only.ndim == 1 and only.dtype.kind in "OUS":
                return only
        usable = order if order and all(n in columns for n in order) else None
        return as_matrix(columns, usable)

    def predict(data: Any) -> Any:
        return np.asarray(estimator.predict(convert(data)))

    proba = None
    if hasattr(estimator, "predict_proba"):

        def proba(data: Any) -> Any:
            return np.asarray(estimator.predict_proba(convert(data)))

    return predict, proba


class _RefuseArrayApiTorch(importlib.abc.MetaPathFinder):
    """Refuses ``sklearn.externals.array_api_compat.torch`` (see :func:`import_skops`)."""

    NAME = "sklearn.externals.array_api_compat.torch"

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == self.NAME:
            raise ImportError(f"{self.NAME} is not needed to save or load a skops file")


def import_skops() -> Any:
    """``skops.io``, imported without importing PyTorch.

    At import, skops lists scikit-learn's estimators with ``all_estimators()``, whose
    ``pkgutil.walk_packages`` imports every subpackage, vendored ones included, before
    filtering them out; ``array_api_compat.torch`` imports PyTorch wherever it is
    installed: ~2 CPU-seconds and ~180 MB in every process that saves or loads a
    scikit-learn model (a model server replica, a transform or training job). The walk
    skips a package whose import fails, so that one is refused while skops imports; a
    failed import is not cached, so it can still be imported normally later.
    """
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    finder = _RefuseArrayApiTorch()
    sys.meta_path.insert(0, finder)
    try:
        return require("skops.io", SklearnFlavor.name, _INSTALL)
    finally:
        sys.meta_path.remove(finder)


class SklearnFlavor(Flavor):
    name = "sklearn"
    libraries = ("scikit-learn", "skops", "scipy")

    def matches(self, model: Any) -> bool:
        return "sklearn" in type_modules(model)

    def save(self, model: Any, folder: Path, options: SaveOptions) -> Saved:
        sio = import_skops()
        sio.dump(model, folder / FILE)
        classes = getattr(model, "classes_", None)
        predict, _proba = predictors(model)
        return Saved(
            framework=self.versions(),
            task=_task(model),
            classes=json_classes(classes) if classes is not None else None,
            extra={"estimator": f"{type(model).__module__}.{type(model).__qualname__}"},
            predict=predict,
        )

    def load(self, folder: Path, descriptor: ModelDescriptor, options: LoadOptions) -> LoadedModel:
        sio = import_skops()
        exceptions = require("skops.io.exceptions", self.name, _INSTALL)
        path = one_file(folder, descriptor, [FILE])
        allowed = trusted_types(options.trusted_types)
        try:
            estimator = sio.load(path, trusted=allowed)
        except exceptions.UntrustedTypesFoundException as exc:
            raise UntrustedModel(
                f"{path.name} holds type(s) outside the trusted list: {exc}. Add a type to "
                "MODELYARD_TRUSTED_TYPES or pass trusted_types=[...] only if you trust its "
                "code; nothing from the file was constructed"
            ) from None
        except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as exc:
            raise InvalidInput(f"{path.name} is not a readable skops file: {exc}") from None
        signature = descriptor.signature
        check_loaded(estimator)  # index-holding types are checked before any use
        predict, proba = predictors(estimator, signature.column_names if signature else None)
        return LoadedModel(descriptor, estimator, predict, proba, path=folder)
