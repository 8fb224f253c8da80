"""LightGBM boosters and scikit-learn wrappers in LightGBM's text model format.

The text file holds the trees only; the wrapper's class labels go into the descriptor
(``classes``), and ``predict`` of a classifier maps the booster's probabilities back to
those labels. ``native`` is the :class:`lightgbm.Booster` (rebuilding an ``LGBMClassifier``
without pickle is not something LightGBM supports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
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
from modelyard.flavors._signature import as_matrix

FILE = "model.txt"
_INSTALL = "pip install lightgbm"


def task_of(objective: str | None) -> str | None:
    if not objective:
        return None
    name = objective.split(" ", 1)[0]
    if name in ("binary", "multiclass", "multiclassova", "cross_entropy", "xentropy"):
        return "classification"
    if name in ("lambdarank", "rank_xendcg"):
        return "ranking"
    return "regression"


class LightGBMFlavor(Flavor):
    name = "lightgbm"
    libraries = ("lightgbm",)

    def matches(self, model: Any) -> bool:
        return "lightgbm" in type_modules(model)

    def save(self, model: Any, folder: Path, options: SaveOptions) -> Saved:
        lgb = require("lightgbm", self.name, _INSTALL)
        if isinstance(model, lgb.Booster):
            booster, wrapper = model, None
        elif isinstance(model, lgb.LGBMModel):
            booster, wrapper = model.booster_, type(model).__name__
        else:
            raise InvalidInput(
                f"the lightgbm flavor saves a Booster or an LGBMModel, not {type(model).__name__}"
            )
        booster.save_model(str(folder / FILE))
        classes = getattr(model, "classes_", None) if wrapper else None
        objective = str(booster.params.get("objective") or _objective_from_dump(booster) or "")
        extra = {"wrapper": wrapper, "objective": objective or None}
        names = [str(n) for n in booster.feature_name()]
        saved_classes = json_classes(classes) if classes is not None else None
        predict, _proba = _predictors(booster, saved_classes, names)
        return Saved(
            framework=self.versions(),
            task="classification" if saved_classes is not None else task_of(objective),
            classes=saved_classes,
            extra={**extra, "feature_names": names},
            predict=predict,
        )

    def load(self, folder: Path, descriptor: ModelDescriptor, options: LoadOptions) -> LoadedModel:
        lgb = require("lightgbm", self.name, _INSTALL)
        path = one_file(folder, descriptor, [FILE])
        try:
            booster = lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError as exc:
            raise InvalidInput(f"{path.name} is not a readable LightGBM model: {exc}") from None
        names = descriptor.extra.get("feature_names") or None
        predict, proba = _predictors(booster, descriptor.classes, names)
        return LoadedModel(descriptor, booster, predict, proba, path=folder)


def _objective_from_dump(booster: Any) -> str | None:
    for line in booster.model_to_string(num_iteration=0).splitlines()[:40]:
        if line.startswith("objective="):
            return str(line.split("=", 1)[1])
    return None


def _predictors(booster: Any, classes: list[Any] | None, names: Any) -> tuple[Any, Any]:
    columns = [str(n) for n in names] if names else None
    synthetic = columns is not None and all(n.startswith("Column_") for n in columns)
    order = None if synthetic else columns

    def raw(data: Any) -> Any:
        return np.asarray(booster.predict(as_matrix(data, order, np.float64)))

    if classes is None:
        return raw, None

    def proba(data: Any) -> Any:
        scores = raw(data)
        if scores.ndim == 1:  # binary: probability of the second class
            return np.column_stack([1.0 - scores, scores])
        return scores

    labels = np.asarray(classes)

    def predict(data: Any) -> Any:
        return labels[np.argmax(proba(data), axis=1)]

    return predict, proba
