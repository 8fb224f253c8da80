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


def _tree_models(tmp_path: Path) -> dict[str, Any]:
    """XGBoost as its scikit-learn wrapper and as a bare Booster, LightGBM as a Booster:
    each saved and loaded as a transform job loads it."""
    import lightgbm
    import xgboost

    x, y = _data(30_000)
    models = {
        "xgb-classifier": xgboost.XGBClassifier(n_estimators=30, max_depth=5).fit(x, y),
        "xgb-booster": xgboost.train(
            {"objective": "binary:logistic", "max_depth": 5}, xgboost.DMatrix(x, y), 30
        ),
        "lgbm": lightgbm.train(
            {"objective": "binary", "verbose": -1}, lightgbm.Dataset(x, y), num_boost_round=30
        ),
    }
    for name, fitted in models.items():
        save_model(fitted, tmp_path / name)
    return {name: load_model(tmp_path / name) for name in models}


def test_xgboost_and_lightgbm_predict_over_row_slices_with_the_native_answers(
    tmp_path: Path,
) -> None:
    x, _ = _data(30_000)
    for name, model in _tree_models(tmp_path).items():
        expected = np.asarray(model.predict(x))  # one call, the library's own threads
        expected_proba = None if model.predict_proba is None else np.asarray(model.predict_proba(x))
        engine = fastpath.choose(model, x, threads=2)
        assert engine.name == "native", (name, engine)
        assert "over row slices on 2 threads" in engine.reason, (name, engine.reason)
        # Bit for bit: a row's answer does not depend on the rows called with it.
        np.testing.assert_array_equal(np.asarray(engine.predict(x)), expected, err_msg=name)
        if expected_proba is not None:
            assert engine.predict_proba is not None, name
            np.testing.assert_array_equal(
                np.asarray(engine.predict_proba(x)), expected_proba, err_msg=name
            )
        one = fastpath.choose(model, x, threads=1)
        assert "one thread" in one.reason, (name, one.reason)
        np.testing.assert_array_equal(np.asarray(one.predict(x)), expected, err_msg=name)


def test_row_slices_of_named_columns_come_back_in_order() -> None:
    import pyarrow as pa

    predict = fastpath._row_parallel(lambda b: b.column("a").to_numpy() * 2, 2)
    batch = pa.record_batch({"a": np.arange(10_000, dtype=np.float64)})
    np.testing.assert_array_equal(predict(batch), np.arange(10_000) * 2.0)


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


# -- the verified conversion kept per model artifact ---------------------------------------


@pytest.fixture
def onnx_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime timed faster, whatever this machine's load: the tests are about the
    cache, not the timing."""
    monkeypatch.setattr(fastpath, "_race", lambda ort, native, x: (0.0, 1.0))


def _no_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard.serving import onnx_fastpath

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("converted again despite the cache")

    monkeypatch.setattr(onnx_fastpath, "try_fast_path", refuse)


def test_a_later_job_reuses_the_verified_conversion_without_converting(
    hgb: Any, tmp_path: Path, onnx_wins: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, _ = _data()
    cache = tmp_path / "cache" / "artifact-key"
    first = fastpath.choose(hgb, x, threads=2, cache=cache)
    assert first.name == "onnxruntime", first.reason
    assert (cache / fastpath.ONNX_FILE).is_file()
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".partial-")]

    _no_conversion(monkeypatch)
    later = fastpath.choose(hgb, x, threads=2, cache=cache)
    assert later.name == "onnxruntime", later.reason
    assert later.reason.startswith("cached: ")
    assert f"checked again on {min(len(x), fastpath.CHECK_ROWS)} rows" in later.reason
    np.testing.assert_array_equal(np.asarray(later.predict(x)), np.asarray(hgb.predict(x)))
    assert later.predict_proba is not None
    np.testing.assert_allclose(
        np.asarray(later.predict_proba(x)), np.asarray(hgb.predict_proba(x)), atol=1e-5
    )


def test_a_cached_verdict_of_not_faster_stays_native_without_converting(
    hgb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, _ = _data()
    monkeypatch.setattr(fastpath, "_race", lambda ort, native, x: (1.0, 0.5))
    cache = tmp_path / "key"
    assert fastpath.choose(hgb, x, cache=cache).name == "native"
    _no_conversion(monkeypatch)
    engine = fastpath.choose(hgb, x, cache=cache)
    assert engine.name == "native"
    assert "not faster" in engine.reason and "cached" in engine.reason


def test_a_damaged_cached_model_is_not_used_but_converted_again(
    hgb: Any, tmp_path: Path, onnx_wins: None
) -> None:
    x, _ = _data()
    cache = tmp_path / "key"
    fastpath.choose(hgb, x, cache=cache)
    onnx = cache / fastpath.ONNX_FILE
    onnx.write_bytes(onnx.read_bytes()[:-10])  # truncated: its SHA-256 no longer matches
    engine = fastpath.choose(hgb, x, cache=cache)
    assert engine.name == "onnxruntime"
    assert not engine.reason.startswith("cached: "), engine.reason
    np.testing.assert_array_equal(np.asarray(engine.predict(x)), np.asarray(hgb.predict(x)))


def test_a_cached_model_that_differs_on_this_jobs_rows_is_not_used(
    hgb: Any, tmp_path: Path, onnx_wins: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _data()
    cache = tmp_path / "key"
    fastpath.choose(hgb, x, cache=cache)
    # Another model under the same key (what a wrong or stale cache entry would be).
    other = tmp_path / "other"
    save_model(HistGradientBoostingClassifier(max_iter=20).fit(x, 1 - y), other)
    _no_conversion(monkeypatch)
    engine = fastpath.choose(load_model(other), x, cache=cache)
    assert engine.name == "native"
    assert "cached ONNX model gave other labels" in engine.reason, engine.reason


def test_the_cache_folder_is_named_by_the_artifacts_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fastpath.CACHE_ENV, str(tmp_path / "cache"))
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    a.write_bytes(b"model one")
    b.write_bytes(b"model two")
    folder = fastpath.cache_folder(a)
    assert folder is not None and folder.parent == tmp_path / "cache"
    assert fastpath.cache_folder(a) == folder
    assert fastpath.cache_folder(b) != folder
    assert fastpath.cache_folder(tmp_path / "missing.tar.gz") is None
    monkeypatch.setenv(fastpath.CACHE_ENV, "off")
    assert fastpath.cache_folder(a) is None
    monkeypatch.delenv(fastpath.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = fastpath.cache_folder(a)
    assert (
        default is not None and default.parent == tmp_path / "xdg" / "modelyard" / "transform-onnx"
    )


def test_a_stored_folder_is_never_overwritten_or_left_half_written(tmp_path: Path) -> None:
    folder = tmp_path / "key"
    fastpath._store(folder, b"first", {"n": 1})
    fastpath._store(folder, b"second", {"n": 2})  # another job stored it first: kept
    assert (folder / fastpath.ONNX_FILE).read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


def test_rows_near_a_tie_get_the_native_label() -> None:
    proba = np.array([[0.2, 0.8], [0.50002, 0.49998], [0.9, 0.1], [0.3, 0.7]], np.float32)
    onnx_labels = np.array([1, 1, 0, 1])  # row 1: ONNX Runtime's float32 sum tipped it

    class Session:
        def run(self, names: list[str], feed: dict[str, Any]) -> list[Any]:
            assert names == ["label", "probabilities"]  # one call gives both
            return [onnx_labels[: len(feed["x"])], proba[: len(feed["x"])]]

    asked: list[int] = []

    def native(x: Any) -> Any:
        asked.extend(int(v) for v in x[:, 0])
        return np.zeros(len(x), dtype=np.int64)  # the native model says 0 for row 1

    layout = {"input": "x", "label": "label", "proba": "probabilities", "tail": [], "dtype": "<i8"}
    predict = fastpath._ties_native(Session(), layout, native)
    x = np.arange(4, dtype=np.float32).reshape(-1, 1)
    got = predict(x)
    np.testing.assert_array_equal(got, [1, 0, 0, 1])
    assert got.dtype == np.int64
    assert asked == [1]  # only the near-tie row went to the native model
