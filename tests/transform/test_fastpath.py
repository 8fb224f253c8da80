"""The transform's engine choice: ONNX Runtime only where verified equal on the job's own
rows, and predictions equal to the native model's whichever engine is chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from modelyard.flavors import load_model, save_model
from modelyard.transform import fastpath


def _data(rows: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((rows, 6), dtype=np.float32)
    y = (x[:, 0] - 0.5 * x[:, 3] + rng.normal(0, 0.3, rows) > 0).astype(np.int64)
    return x, y


@pytest.fixture(scope="module")
def hgb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    x, y = _data()
    folder = tmp_path_factory.mktemp("hgb") / "model"
    save_model(HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(x, y), folder)
    return load_model(folder)


@pytest.mark.parametrize("threads", [1, 3])
def test_whichever_engine_is_chosen_labels_equal_the_native_model(hgb: Any, threads: int) -> None:
    x, _ = _data()
    engine = fastpath.choose(hgb, x, threads=threads)  # 3: rows in three slices, in order
    assert engine.name in ("onnxruntime", "native"), engine
    assert engine.reason
    np.testing.assert_array_equal(np.asarray(engine.predict(x)), np.asarray(hgb.predict(x)))
    assert engine.predict_proba is not None
    np.testing.assert_allclose(
        np.asarray(engine.predict_proba(x)), np.asarray(hgb.predict_proba(x)), atol=1e-5
    )


def test_a_verified_conversion_is_reported_with_its_sample(hgb: Any) -> None:
    x, _ = _data()
    engine = fastpath.choose(hgb, x)
    if engine.name == "native":  # verified, but this machine ran it slower: says so
        assert "not faster" in engine.reason, engine.reason
    else:
        assert "matched native on 4000 sample rows" in engine.reason, engine.reason


def test_row_slices_come_back_in_order() -> None:
    predict = fastpath._row_parallel(lambda x: x[:, 0] * 2, 3)
    x = np.arange(10_000, dtype=np.float32).reshape(-1, 1)
    np.testing.assert_array_equal(predict(x), x[:, 0] * 2)


def test_float64_input_stays_native(hgb: Any) -> None:
    x, _ = _data()
    engine = fastpath.choose(hgb, x.astype(np.float64))
    assert engine.name == "native"
    assert "float32" in engine.reason


def test_too_few_rows_to_verify_stay_native(hgb: Any) -> None:
    x, _ = _data(50)
    engine = fastpath.choose(hgb, x)
    assert engine.name == "native"
    assert "fewer than" in engine.reason


def test_xgboost_keeps_its_own_predict(tmp_path: Path) -> None:
    import xgboost

    x, y = _data()
    save_model(xgboost.XGBClassifier(n_estimators=5).fit(x, y), tmp_path / "m")
    model = load_model(tmp_path / "m")
    engine = fastpath.choose(model, x)
    assert engine.name == "native"
    assert "'xgboost'" in engine.reason


def test_a_model_failing_on_the_sample_stays_native(hgb: Any) -> None:
    class Broken:
        flavor = "sklearn"
        descriptor = hgb.descriptor
        native = hgb.native
        predict_proba = None

        def predict(self, x: Any) -> Any:
            raise ValueError("cannot predict")

    x, _ = _data()
    engine = fastpath.choose(Broken(), x)
    assert engine.name == "native"
    assert "cannot predict" in engine.reason
