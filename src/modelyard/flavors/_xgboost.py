"""XGBoost boosters and scikit-learn wrappers in XGBoost's own UBJSON (or JSON) format.

A wrapper (``XGBClassifier``, ``XGBRegressor``, ...) is saved with its own
``save_model``, which keeps the scikit-learn attributes beside the trees; the descriptor
records the wrapper's class name, and loading rebuilds it from :data:`WRAPPERS` (a fixed
table: a class name read from the descriptor never selects arbitrary code).
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

FILES = ("model.ubj", "model.json")
WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")
_INSTALL = "pip install xgboost"


def task_of(objective: str | None) -> str | None:
    if not objective:
        return None
    family = objective.split(":", 1)[0]
    return {
        "binary": "classification",
        "multi": "classification",
        "rank": "ranking",
        "reg": "regression",
        "count": "regression",
        "survival": "survival",
    }.get(family)


def _objective(booster: Any) -> str | None:
    import json

    try:
        config = json.loads(booster.save_config())
        return str(config["learner"]["objective"]["name"])
    except (KeyError, TypeError, ValueError):
        return None


class XGBoostFlavor(Flavor):
    name = "xgboost"
    libraries = ("xgboost",)

    def matches(self, model: Any) -> bool:
        return "xgboost" in type_modules(model)

    def save(self, model: Any, folder: Path, options: SaveOptions) -> Saved:
        xgb = require("xgboost", self.name, _INSTALL)
        file_format = str(options.extra.get("xgboost_format", "ubj"))
        if file_format not in ("ubj", "json"):
            raise InvalidInput(f"xgboost_format {file_format!r} must be 'ubj' or 'json'")
        path = folder / f"model.{file_format}"
        if isinstance(model, xgb.Booster):
            booster, wrapper = model, None
        elif type(model).__name__ in WRAPPERS and isinstance(model, xgb.XGBModel):
            booster, wrapper = model.get_booster(), type(model).__name__
        else:
            raise InvalidInput(
                f"the xgboost flavor saves a Booster or one of {', '.join(WRAPPERS)}, "
                f"not {type(model).__name__}"
            )
        (model if wrapper else booster).save_model(path)
        objective = _objective(booster)
        classes = getattr(model, "classes_", None) if wrapper else None
        names = booster.feature_names
        extra: dict[str, Any] = {"wrapper": wrapper, "objective": objective}
        if names:
            extra["feature_names"] = list(names)
        predict, _proba = _predictors(model, wrapper, names)
        return Saved(
            framework=self.versions(),
            task=task_of(objective),
            classes=json_classes(classes) if classes is not None else None,
            extra=extra,
            predict=predict,
        )

    def load(self, folder: Path, descriptor: ModelDescriptor, options: LoadOptions) -> LoadedModel:
        xgb = require("xgboost", self.name, _INSTALL)
        path = one_file(folder, descriptor, FILES)
        wrapper = descriptor.extra.get("wrapper")
        if wrapper is not None and wrapper not in WRAPPERS:
            raise InvalidInput(f"unknown XGBoost wrapper {wrapper!r}; known: {', '.join(WRAPPERS)}")
        try:
            model = getattr(xgb, wrapper)() if wrapper else xgb.Booster()
            model.load_model(path)
        except xgb.core.XGBoostError as exc:
            raise InvalidInput(f"{path.name} is not a readable XGBoost model: {exc}") from None
        names = descriptor.extra.get("feature_names")
        predict, proba = _predictors(model, wrapper, names)
        return LoadedModel(descriptor, model, predict, proba, path=folder)


def _predictors(model: Any, wrapper: str | None, names: Any) -> tuple[Any, Any]:
    columns = [str(n) for n in names] if names else None

    def matrix(data: Any) -> Any:
        return as_matrix(data, columns, np.float32)

    if wrapper is None:

        def predict_booster(data: Any) -> Any:
            return np.asarray(model.inplace_predict(matrix(data), validate_features=False))

        return predict_booster, None

    def features(data: Any) -> Any:
        values = matrix(data)
        if not columns:
            return values
        # The wrapper checks feature names against the ones it was trained with.
        pandas = require("pandas", "xgboost", "pip install pandas")
        return pandas.DataFrame(values, columns=columns)

    def predict(data: Any) -> Any:
        return np.asarray(model.predict(features(data)))

    proba = None
    if hasattr(model, "predict_proba"):

        def proba(data: Any) -> Any:
            return np.asarray(model.predict_proba(features(data)))

    return predict, proba
