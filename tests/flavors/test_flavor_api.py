"""save_model/load_model contracts: digests, refusals, atomic saves, built-in folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import modelyard.flavors as flavors
from modelyard.algorithms import kmeans, linear_learner
from modelyard.errors import (
    ArtifactCorrupted,
    Conflict,
    InvalidInput,
    NotFound,
    UntrustedModel,
    error_from_dict,
)
from modelyard.flavors import (
    FLAVORS,
    MODEL_FILE,
    load_model,
    read_descriptor,
    save_model,
    sha256_file,
)


@pytest.fixture
def saved(tmp_path: Path, xy: Any) -> Path:
    x, y = xy
    save_model(LogisticRegression().fit(x, y), tmp_path / "m")
    return tmp_path / "m"


def test_public_names() -> None:
    for name in (
        "MODEL_FILE",
        "Signature",
        "TensorSpec",
        "ModelDescriptor",
        "infer_signature",
        "save_model",
        "load_model",
        "LoadedModel",
        "read_descriptor",
        "FLAVORS",
        "validate",
    ):
        assert name in flavors.__all__
    assert MODEL_FILE == "modelyard-model.json"
    assert {
        "sklearn",
        "xgboost",
        "lightgbm",
        "onnx",
        "torchscript",
        "python",
        "pickle",
        "builtin:xgboost",
        "builtin:kmeans",
    } <= set(FLAVORS)


def test_tampered_file_is_refused(saved: Path) -> None:
    with open(saved / "model.skops", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactCorrupted, match=r"model.skops .* changed after") as info:
        load_model(saved)
    assert str(saved) not in str(info.value)  # errors reach clients: no server path in them


def test_deleted_file_is_refused(saved: Path) -> None:
    (saved / "model.skops").unlink()
    with pytest.raises(ArtifactCorrupted, match=r"model.skops is missing") as info:
        load_model(saved)
    assert str(saved) not in str(info.value)


def test_descriptor_rewritten_with_new_digests_fails_the_registry_check(saved: Path) -> None:
    registry = {"model.skops": sha256_file(saved / "model.skops")}
    load_model(saved, expected_digests=registry)
    (saved / "model.skops").write_bytes(b"swapped")
    descriptor = read_descriptor(saved)
    forged = descriptor.model_copy(
        update={"files": {"model.skops": sha256_file(saved / "model.skops")}}
    )
    (saved / MODEL_FILE).write_text(forged.model_dump_json())
    with pytest.raises(UntrustedModel, match="not the registry's"):
        load_model(saved, expected_digests=registry)
    with pytest.raises(UntrustedModel, match="missing from the model"):
        load_model(saved, expected_digests={"other.bin": "0" * 64})


def test_unknown_flavor_lists_the_known_ones(saved: Path) -> None:
    document = json.loads((saved / MODEL_FILE).read_text())
    document["flavor"] = "keras"
    (saved / MODEL_FILE).write_text(json.dumps(document))
    with pytest.raises(InvalidInput, match=r"unknown flavor 'keras'; known: .*sklearn"):
        load_model(saved)
    with pytest.raises(InvalidInput, match="unknown flavor 'keras'"):
        save_model(object(), saved.parent / "other", flavor="keras")


def test_descriptor_with_unsafe_paths_is_refused(saved: Path) -> None:
    document = json.loads((saved / MODEL_FILE).read_text())
    document["files"] = {"../outside": "0" * 64}
    (saved / MODEL_FILE).write_text(json.dumps(document))
    with pytest.raises(InvalidInput, match=r"not a valid model descriptor.*'\.\.'"):
        load_model(saved)
    document["files"] = {}
    document["format_version"] = 2
    (saved / MODEL_FILE).write_text(json.dumps(document))
    with pytest.raises(InvalidInput, match="format_version 2 is not 1"):
        read_descriptor(saved)
    (saved / MODEL_FILE).write_text("{not json")
    with pytest.raises(InvalidInput, match="not a valid model descriptor"):
        read_descriptor(saved)


def test_missing_folder_and_folder_without_model(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        load_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match=r"holds no modelyard-model.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(NotFound, match="does not exist"):
        save_model(tmp_path / "absent.onnx", tmp_path / "m")


def test_save_refuses_a_non_empty_target_and_keeps_it(saved: Path, xy: Any) -> None:
    x, y = xy
    before = sorted(p.name for p in saved.iterdir())
    with pytest.raises(Conflict, match="not an empty folder"):
        save_model(LogisticRegression().fit(x, y), saved)
    assert sorted(p.name for p in saved.iterdir()) == before
    (saved.parent / "empty").mkdir()
    save_model(LogisticRegression().fit(x, y), saved.parent / "empty")  # empty is fine
    assert (saved.parent / "empty" / MODEL_FILE).is_file()


def test_failed_save_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        save_model(object(), tmp_path / "m", flavor="xgboost")
    assert list(tmp_path.iterdir()) == []


def test_untrusted_model_error_travels_over_http() -> None:
    error = UntrustedModel("nope")
    rebuilt = error_from_dict(error.status, error.to_dict())
    assert type(rebuilt) is UntrustedModel
    assert rebuilt.status == 400


def _train(module: Any, tmp_path: Path, hps: dict[str, Any], label: bool) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    train = tmp_path / "train"
    train.mkdir()
    lines = ["a,b,c" + (",label" if label else "")]
    for row in x:
        lines.append(",".join(map(str, row)) + (f",{int(row[0] > 0)}" if label else ""))
    (train / "data.csv").write_text("\n".join(lines) + "\n")
    env = {
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_CHANNEL_TRAIN": str(train),
        "SM_OUTPUT_DIR": str(tmp_path / "out"),
        "SM_HPS": json.dumps(hps),
        "SM_NUM_CPUS": "1",
    }
    assert module.main([], env) == 0
    return tmp_path / "model"


def test_builtin_folder_without_descriptor_then_saved_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = _train(linear_learner, tmp_path, {"predictor_type": "binary_classifier"}, True)
    derived = read_descriptor(model_dir)
    assert derived.flavor == "builtin:linear_learner"
    assert set(derived.files) >= {"model.npz", "model.json", "signature.json", "metadata.json"}
    assert derived.signature is not None
    assert derived.signature.column_names == ["a", "b", "c"]
    assert not (model_dir / MODEL_FILE).exists()  # reading derives, it does not write
    loaded = load_model(model_dir)
    rows = [{"a": 1.0, "b": 0.0, "c": 0.0}, {"a": -1.0, "b": 0.0, "c": 0.0}]
    assert loaded.predict_proba is not None
    descriptor = save_model(model_dir, model_dir)
    assert descriptor.flavor == "builtin:linear_learner"
    assert (model_dir / MODEL_FILE).is_file()
    again = load_model(model_dir, expected_digests=descriptor.files)
    np.testing.assert_array_equal(again.predict(rows), loaded.predict(rows))
    assert again.descriptor.task == "classification"


def test_builtin_folder_copied_elsewhere(tmp_path: Path) -> None:
    model_dir = _train(kmeans, tmp_path, {"k": 2}, False)
    descriptor = save_model(model_dir, tmp_path / "copy")
    assert descriptor.flavor == "builtin:kmeans"
    loaded = load_model(tmp_path / "copy")
    assert loaded.predict([[0.0, 0.0, 0.0]]).shape == (1,)
    with pytest.raises(InvalidInput, match="is not a linear_learner model folder"):
        save_model(model_dir, tmp_path / "wrong", flavor="builtin:linear_learner")


def test_save_options_are_checked(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    model = LogisticRegression().fit(x, y)
    with pytest.raises(InvalidInput, match="extra must be a JSON object"):
        save_model(model, tmp_path / "m", extra={"when": object()})
    source = tmp_path / "handler"
    source.mkdir()
    (source / "handler.py").write_text(
        "def load(d):\n    return 1\n\ndef predict(o, x):\n    return x\n"
    )
    with pytest.raises(InvalidInput, match="a folder inside it"):
        save_model(source, source / "saved")
    assert not (source / "saved").exists()
    descriptor = save_model(model, tmp_path / "m", extra={"estimator": "forged", "team": "risk"})
    assert descriptor.extra["team"] == "risk"
    assert descriptor.extra["estimator"].endswith("LogisticRegression")


def test_one_numeric_column_stays_a_matrix(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    model = LogisticRegression().fit(x[:, :1], y)
    save_model(model, tmp_path / "m", sample_input={"x0": x[:3, 0]})
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict({"x0": x[:, 0]}), model.predict(x[:, :1]))


def test_sample_input_the_model_cannot_take(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    model = LogisticRegression().fit(x, y)
    with pytest.raises(InvalidInput, match="could not predict the sample input: ValueError"):
        save_model(model, tmp_path / "m", sample_input=x[:, :2])
    assert not (tmp_path / "m").exists()


def test_unreadable_model_file_is_invalid_input(saved: Path) -> None:
    (saved / "model.skops").write_bytes(b"not a zip archive")
    descriptor = read_descriptor(saved)
    forged = {"model.skops": sha256_file(saved / "model.skops")}
    (saved / MODEL_FILE).write_text(
        descriptor.model_copy(update={"files": forged}).model_dump_json()
    )
    with pytest.raises(InvalidInput, match="not a readable skops file"):
        load_model(saved)


def test_importing_the_package_imports_no_ml_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, modelyard.flavors; "
        "print(sorted(m for m in ('sklearn', 'skops', 'xgboost', 'lightgbm', 'onnx', "
        "'onnxruntime', 'torch', 'pandas', 'polars') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
