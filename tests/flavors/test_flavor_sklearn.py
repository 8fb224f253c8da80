"""scikit-learn models: skops files, loaded only against the server-side allow-list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.errors import InvalidInput, UntrustedModel
from modelyard.flavors import MODEL_FILE, load_model, read_descriptor, save_model


class Sneaky(ClassifierMixin, BaseEstimator):
    """A class that exists only in this test module: no server trusts it."""

    def fit(self, x: Any, y: Any) -> Sneaky:
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: Any) -> Any:
        return np.zeros(len(x), dtype=np.int64)


def test_pipeline_round_trip_with_feature_names(
    tmp_path: Path, frame: pd.DataFrame, xy: Any
) -> None:
    _, y = xy
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y)
    descriptor = save_model(model, tmp_path / "m", sample_input=frame.head(5))
    assert descriptor.flavor == "sklearn"
    assert set(descriptor.files) == {"model.skops"}
    assert descriptor.task == "classification"
    assert descriptor.classes == [0, 1]
    assert descriptor.framework["scikit-learn"]
    assert descriptor.signature is not None
    assert descriptor.signature.column_names == ["a", "b", "c", "d"]
    assert descriptor.signature.outputs is not None
    assert descriptor.signature.outputs[0].dtype == "int64"
    assert read_descriptor(tmp_path / "m") == descriptor
    loaded = load_model(tmp_path / "m")
    assert loaded.flavor == "sklearn"
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    assert loaded.predict_proba is not None
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame))
    # Records in another column order give the same answer as the frame.
    records = frame.iloc[:3, ::-1].to_dict(orient="records")
    np.testing.assert_array_equal(loaded.predict(records), model.predict(frame.head(3)))
    # Positional rows (what the model server sends) need no names and raise no warning.
    np.testing.assert_array_equal(loaded.predict(frame.to_numpy()), model.predict(frame))
    with pytest.raises(InvalidInput, match="rows have 3 values, the model reads 4"):
        loaded.predict(frame.to_numpy()[:, :3])


def test_forest_needs_a_type_on_the_builtin_allow_list(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")  # sklearn.tree._tree.Tree is on modelyard's list
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_regressor_has_no_probabilities(tmp_path: Path, xy: Any) -> None:
    x, _ = xy
    model = LinearRegression().fit(x, x[:, 0] * 2)
    descriptor = save_model(model, tmp_path / "m", sample_input=x[:2])
    assert descriptor.task == "regression"
    assert descriptor.classes is None
    loaded = load_model(tmp_path / "m")
    assert loaded.predict_proba is None
    np.testing.assert_allclose(loaded.predict(x[:4]), model.predict(x[:4]))
    with pytest.raises(InvalidInput, match=r"the model refused the input: .*features"):
        loaded.predict(x[:4, :2])


def test_custom_class_is_refused_on_load_with_its_name(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    save_model(Sneaky().fit(x, y), tmp_path / "m")
    with pytest.raises(UntrustedModel, match=r"Sneaky") as info:
        load_model(tmp_path / "m")
    assert isinstance(info.value, InvalidInput)
    assert "trusted_types" in info.value.message


def test_trusted_types_argument_and_setting_extend_the_list(
    tmp_path: Path, xy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = xy
    save_model(Sneaky().fit(x, y), tmp_path / "m")
    name = f"{Sneaky.__module__}.Sneaky"
    assert load_model(tmp_path / "m", trusted_types=[name]).predict(x[:2]).tolist() == [0, 0]
    monkeypatch.setenv("MODELYARD_TRUSTED_TYPES", f"numpy.float64, {name}")
    assert isinstance(load_model(tmp_path / "m").native, Sneaky)


def test_the_file_cannot_extend_its_own_trust(tmp_path: Path, xy: Any) -> None:
    """Editing the descriptor (even with fresh digests) does not make a type trusted."""
    x, y = xy
    descriptor = save_model(Sneaky().fit(x, y), tmp_path / "m")
    tampered = descriptor.model_copy(update={"extra": {"trusted_types": ["test.Sneaky"]}})
    (tmp_path / "m" / MODEL_FILE).write_text(tampered.model_dump_json())
    with pytest.raises(UntrustedModel, match="Sneaky"):
        load_model(tmp_path / "m")


def test_bad_trusted_type_names_are_refused(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    save_model(LogisticRegression().fit(x, y), tmp_path / "m")
    with pytest.raises(InvalidInput, match="fully qualified"):
        load_model(tmp_path / "m", trusted_types=["Sneaky"])
    with pytest.raises(InvalidInput, match="list of type names"):
        load_model(tmp_path / "m", trusted_types="numpy.float64")  # type: ignore[arg-type]
