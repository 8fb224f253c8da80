"""ONNX models (ONNX Runtime on the CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression, LogisticRegression

from modelyard.errors import InvalidInput
from modelyard.flavors import load_model, save_model


def test_onnx_classifier_round_trip(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    model = LogisticRegression().fit(x, y)
    proto = to_onnx(model, x[:1].astype(np.float32), target_opset=17)
    descriptor = save_model(proto, tmp_path / "m", sample_input=x[:4])
    assert descriptor.flavor == "onnx"
    assert set(descriptor.files) == {"model.onnx"}
    assert descriptor.classes == [0, 1]  # from the ZipMap of probabilities
    assert descriptor.framework["onnxruntime"]
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.predict_proba is not None
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-5)


def test_onnx_file_path_and_graph_signature(tmp_path: Path, xy: Any) -> None:
    x, _ = xy
    model = LinearRegression().fit(x, x[:, 0])
    proto = to_onnx(model, x[:1].astype(np.float32), target_opset=17)
    path = tmp_path / "reg.onnx"
    path.write_bytes(proto.SerializeToString())
    descriptor = save_model(str(path), tmp_path / "m")
    assert descriptor.flavor == "onnx"
    assert descriptor.signature is not None
    assert descriptor.signature.inputs[0].dtype == "float32"
    assert descriptor.signature.inputs[0].shape == [-1, 4]
    loaded = load_model(tmp_path / "m")
    assert loaded.predict_proba is None
    np.testing.assert_allclose(loaded.predict(x).ravel(), model.predict(x), rtol=1e-4)
    with pytest.raises(InvalidInput, match="refused the input"):
        loaded.predict(np.ones((2, 3)))


def test_broken_onnx_file_is_refused_at_save(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(InvalidInput, match="not a loadable ONNX model"):
        save_model(path, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_onnx_graph_with_one_input_per_column(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame({"city": ["a", "b", "c", "d"] * 10, "n": np.arange(40, dtype=np.float32)})
    labels = np.arange(40) % 2
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), (StandardScaler(), ["n"])),
        LogisticRegression(),
    ).fit(frame, labels)
    descriptor = save_model(to_onnx(model, frame[:1], target_opset=17), tmp_path / "m")
    assert descriptor.signature is not None
    assert [(s.name, s.dtype) for s in descriptor.signature.inputs] == [
        ("city", "string"),
        ("n", "float32"),
    ]
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    row = pd.DataFrame({"city": ["b"], "n": np.array([3.0], dtype=np.float32)})
    assert loaded.predict([{"n": 3.0, "city": "b"}]).tolist() == model.predict(row).tolist()
    with pytest.raises(InvalidInput, match="inputs 'city', 'n'; give columns"):
        loaded.predict(np.ones((2, 2)))
