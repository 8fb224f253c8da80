"""XGBoost (UBJSON/JSON) and LightGBM (text) models: no pickle, wrappers rebuilt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from modelyard.errors import InvalidInput
from modelyard.flavors import MODEL_FILE, load_model, save_model


def test_xgb_classifier_round_trip(tmp_path: Path, frame: pd.DataFrame, xy: Any) -> None:
    _, y = xy
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(frame, y)
    descriptor = save_model(model, tmp_path / "m", sample_input=frame.head(3))
    assert descriptor.flavor == "xgboost"
    assert set(descriptor.files) == {"model.ubj"}
    assert descriptor.extra["wrapper"] == "XGBClassifier"
    assert descriptor.extra["objective"] == "binary:logistic"
    assert descriptor.task == "classification"
    assert descriptor.classes == [0, 1]
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded.native, xgb.XGBClassifier)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    assert loaded.predict_proba is not None
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame))
    # A plain matrix in the signature's column order works too.
    np.testing.assert_array_equal(loaded.predict(frame.to_numpy()), model.predict(frame))


def test_xgb_regressor_as_json_and_booster(tmp_path: Path, xy: Any) -> None:
    x, _ = xy
    target = x[:, 0] * 3
    model = xgb.XGBRegressor(n_estimators=5, n_jobs=1).fit(x, target)
    descriptor = save_model(model, tmp_path / "json", extra={"xgboost_format": "json"})
    assert set(descriptor.files) == {"model.json"}
    assert descriptor.task == "regression"
    loaded = load_model(tmp_path / "json")
    np.testing.assert_allclose(loaded.predict(x), model.predict(x))
    assert loaded.predict_proba is None
    booster = model.get_booster()
    assert save_model(booster, tmp_path / "booster").extra["wrapper"] is None
    np.testing.assert_allclose(load_model(tmp_path / "booster").predict(x), model.predict(x))


def test_xgb_descriptor_cannot_name_another_class(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    descriptor = save_model(xgb.XGBClassifier(n_estimators=2, n_jobs=1).fit(x, y), tmp_path / "m")
    forged = descriptor.model_copy(update={"extra": {"wrapper": "os.system"}})
    (tmp_path / "m" / MODEL_FILE).write_text(forged.model_dump_json())
    with pytest.raises(InvalidInput, match=r"unknown XGBoost wrapper 'os.system'"):
        load_model(tmp_path / "m")


def test_lgbm_classifier_with_string_labels(tmp_path: Path, frame: pd.DataFrame, xy: Any) -> None:
    _, y = xy
    labels = np.where(y == 1, "yes", "no")
    model = lgb.LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1, n_jobs=1).fit(
        frame, labels
    )
    descriptor = save_model(model, tmp_path / "m", sample_input=frame.head(3))
    assert descriptor.flavor == "lightgbm"
    assert set(descriptor.files) == {"model.txt"}
    assert descriptor.classes == ["no", "yes"]
    assert descriptor.task == "classification"
    assert descriptor.signature is not None and descriptor.signature.outputs is not None
    assert descriptor.signature.outputs[0].dtype == "string"
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded.native, lgb.Booster)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    assert loaded.predict_proba is not None
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame))


def test_lgbm_multiclass_and_regressor(tmp_path: Path, xy: Any) -> None:
    x, _ = xy
    classes = np.digitize(x[:, 0], [-0.5, 0.5])
    model = lgb.LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1, n_jobs=1).fit(
        x, classes
    )
    save_model(model, tmp_path / "multi")
    loaded = load_model(tmp_path / "multi")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.predict_proba is not None
    assert loaded.predict_proba(x).shape == (80, 3)
    regressor = lgb.LGBMRegressor(n_estimators=5, min_child_samples=5, verbose=-1, n_jobs=1)
    regressor.fit(x, x[:, 1])
    descriptor = save_model(regressor.booster_, tmp_path / "reg")
    assert descriptor.task == "regression"
    assert load_model(tmp_path / "reg").predict_proba is None
    np.testing.assert_allclose(load_model(tmp_path / "reg").predict(x), regressor.predict(x))
