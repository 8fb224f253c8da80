"""Custom handler modules (code saved with the model) and pickle behind digests."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.errors import InvalidInput, UntrustedModel
from modelyard.flavors import load_model, save_model, sha256_file

HANDLER = """
import json
from pathlib import Path

import numpy as np


def load(model_dir):
    return {"scale": 2.0, "dir": model_dir}


def predict(obj, data):
    return np.asarray(data, dtype=float).sum(axis=1) * obj["scale"]
"""


def test_handler_file_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as in a default interpreter
    source = tmp_path / "my_handler.py"
    source.write_text(HANDLER)
    path_before = list(sys.path)
    descriptor = save_model(source, tmp_path / "m", sample_input=[[1.0, 2.0]])
    assert descriptor.flavor == "python"
    assert descriptor.files.keys() == {"code/my_handler.py"}
    assert descriptor.extra["entry_point"] == "my_handler.py"
    assert descriptor.signature is not None and descriptor.signature.outputs is not None
    assert descriptor.signature.outputs[0].dtype == "float64"
    loaded = load_model(tmp_path / "m")
    assert loaded.predict([[1, 2], [3, 4]]).tolist() == [6.0, 14.0]
    assert loaded.native["dir"] == str(tmp_path / "m")
    assert loaded.predict_proba is None
    assert sys.path == path_before
    # Two loads import two separate modules; neither is importable by a plain name.
    again = load_model(tmp_path / "m")
    assert again.native is not loaded.native
    assert "my_handler" not in sys.modules
    assert not list((tmp_path / "m").rglob("__pycache__"))  # the folder stays as saved
    assert sys.dont_write_bytecode is False


def test_sagemaker_layout_with_artifacts_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "code").mkdir(parents=True)
    (source / "weights.txt").write_text("3")
    (source / "code" / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (source / "code" / "inference.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from .helpers import double

            def model_fn(model_dir):
                return float(Path(model_dir, "weights.txt").read_text())

            def predict_fn(data, model):
                return [double(model) * v for v in data]

            def predict_proba(obj, data):
                return [[0.5, 0.5] for _ in data]
            """
        )
    )
    descriptor = save_model(source, tmp_path / "m")
    assert descriptor.extra["entry_point"] == "inference.py"
    assert set(descriptor.files) == {"weights.txt", "code/helpers.py", "code/inference.py"}
    loaded = load_model(tmp_path / "m")
    assert loaded.predict([1, 2]) == [6.0, 12.0]
    assert loaded.predict_proba is not None
    assert loaded.predict_proba([1]).tolist() == [[0.5, 0.5]]


def test_handler_without_functions_is_refused_at_save(tmp_path: Path) -> None:
    source = tmp_path / "h.py"
    source.write_text("def load(model_dir):\n    return 1\n")
    with pytest.raises(InvalidInput, match="defines none of predict, predict_fn"):
        save_model(source, tmp_path / "m")
    assert not (tmp_path / "m").exists()
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "readme.txt").write_text("no code")
    with pytest.raises(InvalidInput, match="no entry module"):
        save_model(folder, tmp_path / "m", flavor="python")


def test_handler_import_error_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "h.py"
    source.write_text("import not_a_module_anywhere\n" + HANDLER)
    save_model(source, tmp_path / "m")
    with pytest.raises(InvalidInput, match="ModuleNotFoundError"):
        load_model(tmp_path / "m")
    assert not [
        name for name in sys.modules if name.startswith("_modelyard_model_") and name.endswith(".h")
    ]


def _pickled(tmp_path: Path, xy: Any) -> tuple[Path, LogisticRegression]:
    x, y = xy
    model = LogisticRegression().fit(x, y)
    save_model(model, tmp_path / "m", flavor="pickle", allow_pickle=True)
    return tmp_path / "m", model


def test_pickle_save_needs_allow_pickle(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    with pytest.raises(UntrustedModel, match="allow_pickle=True"):
        save_model(LogisticRegression().fit(x, y), tmp_path / "m", flavor="pickle")
    assert not (tmp_path / "m").exists()
    with pytest.raises(InvalidInput, match="cannot tell which flavor"):
        save_model(object(), tmp_path / "m")


def test_pickle_load_refusals(tmp_path: Path, xy: Any) -> None:
    folder, _ = _pickled(tmp_path, xy)
    digest = sha256_file(folder / "model.joblib")
    with pytest.raises(UntrustedModel, match="allow_pickle=True"):
        load_model(folder, expected_digests={"model.joblib": digest})
    with pytest.raises(UntrustedModel, match="needs the registry's SHA-256"):
        load_model(folder, allow_pickle=True)
    with pytest.raises(UntrustedModel, match="not the registry's"):
        load_model(folder, allow_pickle=True, expected_digests={"model.joblib": "0" * 64})


def test_pickle_loads_when_allowed_and_vouched_for(tmp_path: Path, xy: Any) -> None:
    x, _ = xy
    folder, model = _pickled(tmp_path, xy)
    digest = sha256_file(folder / "model.joblib")
    loaded = load_model(folder, allow_pickle=True, expected_digests={"model.joblib": digest})
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.predict_proba is not None
    assert loaded.descriptor.classes == [0, 1]


def test_existing_pickle_file_is_copied(tmp_path: Path, xy: Any) -> None:
    import pickle

    x, y = xy
    model = LogisticRegression().fit(x, y)
    source = tmp_path / "model.pkl"
    source.write_bytes(pickle.dumps(model))
    descriptor = save_model(source, tmp_path / "m", allow_pickle=True)
    assert descriptor.flavor == "pickle"
    assert descriptor.files == {"model.pkl": sha256_file(source)}
    loaded = load_model(
        tmp_path / "m", allow_pickle=True, expected_digests={"model.pkl": sha256_file(source)}
    )
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_handler_load_failure_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "h.py"
    source.write_text(
        "def load(model_dir):\n    raise RuntimeError('weights missing')\n\n"
        "def predict(obj, data):\n    return data\n"
    )
    save_model(source, tmp_path / "m")
    with pytest.raises(InvalidInput, match="load\\(model_dir\\) failed: RuntimeError: weights"):
        load_model(tmp_path / "m")
