"""The ONNX Runtime fast path: used when the converted model matches, native otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from servekit import Descriptor, app_for, request

from modelyard.flavors import Signature, TensorSpec, load_model, save_model
from modelyard.serving import ServerSettings, build_app
from modelyard.serving.loading import servable_from_model


def runtime_of(app: Any) -> dict[str, str]:
    return dict(request(app, "GET", f"/v2/models/{app.settings.name}").json()["runtime"])


def test_sklearn_model_converts_and_matches(sklearn_table_model) -> None:  # type: ignore[no-untyped-def]
    folder, estimator, x = sklearn_table_model
    app = build_app(load_model(folder), ServerSettings(name="clf"))
    runtime = runtime_of(app)
    assert runtime["engine"] == "onnxruntime", runtime
    assert "matched native" in runtime["reason"]
    rows = x[:10]
    frame = pd.DataFrame(rows, columns=["a", "b", "c"])  # the estimator was fitted on one
    r = request(app, "POST", "/invocations", json={"instances": rows.tolist()})
    assert r.json()["predictions"] == estimator.predict(frame).tolist()
    inputs = [
        {"name": name, "shape": [10], "datatype": "FP64", "data": rows[:, i].tolist()}
        for i, name in enumerate("abc")
    ]
    r = request(
        app,
        "POST",
        "/v2/models/clf/infer",
        json={"inputs": inputs, "outputs": [{"name": "predict_proba"}]},
    )
    proba = np.asarray(r.json()["outputs"][0]["data"]).reshape(10, 2)
    np.testing.assert_allclose(proba, estimator.predict_proba(frame), rtol=1e-4, atol=1e-5)


def test_no_onnx_keeps_the_native_model(sklearn_table_model) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = sklearn_table_model
    app = build_app(load_model(folder), ServerSettings(name="clf", use_onnx=False))
    assert runtime_of(app) == {"engine": "native", "reason": "ONNX fast path disabled (--no-onnx)"}


class Unconvertible:
    """A model object no ONNX converter knows."""

    n_features_in_ = 3

    def predict(self, x: Any) -> Any:
        return np.asarray(x).sum(axis=1)


class Wrapped:
    """A stand-in LoadedModel around ``native`` whose predict may differ from it."""

    def __init__(self, native: Any, flavor: str, *, shift: float = 0.0) -> None:
        self.native = native
        self.flavor = flavor
        self.shift = shift
        spec = TensorSpec(name=None, dtype="float64", shape=[-1, 3])
        self.descriptor = Descriptor(Signature(inputs=[spec]))

    def predict(self, x: Any) -> Any:
        return np.asarray(self.native.predict(x)) + self.shift


def test_unsupported_conversion_falls_back_to_native_with_the_reason() -> None:
    app = build_app(Wrapped(Unconvertible(), "sklearn"), ServerSettings(name="m"))
    runtime = runtime_of(app)
    assert runtime["engine"] == "native"
    assert runtime["reason"].startswith("ONNX conversion failed")
    assert "Unconvertible" in runtime["reason"]
    r = request(app, "POST", "/invocations", json=[[1, 2, 3]])
    assert r.json() == {"predictions": [6.0]}


def test_a_mismatch_falls_back_to_native() -> None:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3))
    native = LinearRegression().fit(x, x @ [1.0, 2.0, 3.0])
    # the "native" answers differ from what the converted graph computes
    model = Wrapped(native, "sklearn", shift=0.5)
    servable = servable_from_model(model, ServerSettings(name="m"))
    assert servable.runtime.engine == "native"
    assert "differ from native" in servable.runtime.reason
    np.testing.assert_allclose(servable.predict(x[:2]), native.predict(x[:2]) + 0.5)
    # within tolerance, the same model converts
    ok = servable_from_model(Wrapped(native, "sklearn"), ServerSettings(name="m"))
    assert ok.runtime.engine == "onnxruntime"


def test_flavors_without_a_converter_stay_native() -> None:
    app = app_for(Wrapped(Unconvertible(), "python"), use_onnx=True)
    runtime = runtime_of(app)
    assert runtime["engine"] == "native"
    assert "no ONNX conversion for flavor 'python'" in runtime["reason"]
    runtime = runtime_of(app_for(Wrapped(Unconvertible(), "onnx"), use_onnx=True))
    assert runtime == {
        "engine": "native",
        "reason": "the model is already ONNX; its flavor runs it with ONNX Runtime",
    }


def test_a_sample_file_of_the_wrong_width_is_reported(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(2).normal(size=(20, 3))
    sample = tmp_path / "sample.npy"
    np.save(sample, x[:, :2])
    settings = ServerSettings(name="m", onnx_sample=sample)
    servable = servable_from_model(Wrapped(LinearRegression().fit(x, x[:, 0]), "sklearn"), settings)
    assert servable.runtime.engine == "native"
    assert "expected (rows, 3)" in servable.runtime.reason


@pytest.mark.parametrize("library", ["xgboost", "lightgbm", "sklearn-hgb"])
def test_boosted_trees_convert(tmp_path: Path, library: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] - x[:, 2] > 0).astype(int)
    if library == "xgboost":
        import xgboost

        estimator: Any = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(x, y)
    elif library == "sklearn-hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        estimator = HistGradientBoostingClassifier(max_iter=8).fit(x, y)
    else:
        import lightgbm

        estimator = lightgbm.LGBMClassifier(n_estimators=8, verbose=-1).fit(x, y)
    save_model(estimator, tmp_path / "m", sample_input=x[:5])
    model = load_model(tmp_path / "m")
    assert model.flavor == library.split("-")[0]
    sample = tmp_path / "sample.npy"
    np.save(sample, x[:100])
    app = build_app(model, ServerSettings(name="trees", onnx_sample=sample))
    runtime = runtime_of(app)
    assert runtime["engine"] == "onnxruntime", runtime
    r = request(app, "POST", "/invocations", json={"instances": x[100:120].tolist()})
    assert r.json()["predictions"] == np.asarray(model.predict(x[100:120])).tolist()


def test_a_prepared_decision_is_what_workers_serve(sklearn_array_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from modelyard.serving.loading import load_servable
    from modelyard.serving.onnx_fastpath import Decision, save_decision

    folder, estimator, x = sklearn_array_model
    # native, for the recorded reason (no second conversion attempt in the worker)
    save_decision(Decision("native", "labels differed on 3 rows"), tmp_path / "native")
    servable = load_servable(
        ServerSettings(name="m", model_dir=folder, onnx_dir=tmp_path / "native")
    )
    assert (servable.runtime.engine, servable.runtime.reason) == (
        "native",
        "labels differed on 3 rows",
    )
    assert servable.predict(x[:5]).tolist() == estimator.predict(x[:5]).tolist()
    # onnxruntime, from the saved model and layout
    model = load_model(folder)
    converted = servable_from_model(model, ServerSettings(name="m"))
    assert converted.runtime.engine == "onnxruntime"
    from modelyard.serving.loading import native_predictors
    from modelyard.serving.model import InputSchema
    from modelyard.serving.onnx_fastpath import try_fast_path

    predict, proba = native_predictors(model)
    decision = try_fast_path(
        model,
        InputSchema.from_signature(model.descriptor.signature),
        ServerSettings(),
        predict,
        proba,
    )
    save_decision(decision, tmp_path / "onnx")
    servable = load_servable(ServerSettings(name="m", model_dir=folder, onnx_dir=tmp_path / "onnx"))
    assert servable.runtime.engine == "onnxruntime"
    assert servable.model is None  # the worker holds no scikit-learn object
    assert servable.predict(x[:5]).tolist() == estimator.predict(x[:5]).tolist()
    assert servable.predict_proba is not None
    np.testing.assert_allclose(
        servable.predict_proba(x[:5]), estimator.predict_proba(x[:5]), rtol=1e-4, atol=1e-5
    )


def test_a_failed_preparation_means_native_with_the_reason(tmp_path: Path) -> None:
    from modelyard.serving.onnx_fastpath import load_decision
    from modelyard.serving.prepare import prepare

    broken = tmp_path / "broken"
    broken.mkdir()
    prepare(ServerSettings(name="m", model_dir=broken), tmp_path / "out")
    decision = load_decision(tmp_path / "out")
    assert decision.engine == "native"
    assert decision.reason.startswith("ONNX preparation failed (exit status 1")


@pytest.mark.slow
def test_a_worker_on_the_onnx_path_never_imports_the_framework(  # type: ignore[no-untyped-def]
    sklearn_array_model, tmp_path: Path
) -> None:
    from modelyard.serving.prepare import prepare

    folder, _, _ = sklearn_array_model
    settings = ServerSettings(name="m", model_dir=folder)
    prepare(settings, tmp_path / "prepared")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from modelyard.serving.process import app_factory\n"
        "app = app_factory()\n"
        "app._load()\n"
        "print(app.servable.runtime.engine, 'sklearn' in sys.modules, 'skops' in sys.modules)\n"
    )
    env_settings = ServerSettings(name="m", model_dir=folder, onnx_dir=tmp_path / "prepared")
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "MODELYARD_SERVING_SETTINGS": env_settings.to_env()},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["onnxruntime", "False", "False"], out.stderr
