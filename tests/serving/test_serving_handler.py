"""SageMaker handler scripts (model_fn/input_fn/predict_fn/output_fn) run unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from servekit import request

from modelyard.errors import InvalidInput
from modelyard.serving import ModelServer, ServerSettings
from modelyard.serving.loading import load_servable

FIXTURES = Path(__file__).parent / "fixtures"


def sagemaker_model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "sm-model"
    folder.mkdir()
    (folder / "weights.json").write_text(json.dumps({"weights": [1.0, 10.0], "bias": 0.5}))
    return folder


def serve(settings: ServerSettings) -> ModelServer:
    return ModelServer(settings, load_servable(settings))


def test_the_script_runs_unchanged(tmp_path: Path) -> None:
    assert "modelyard" not in (FIXTURES / "inference.py").read_text().split('"""')[2]
    settings = ServerSettings(
        name="sm", model_dir=sagemaker_model_dir(tmp_path), handler=FIXTURES / "inference.py"
    )
    app = serve(settings)
    r = request(app, "POST", "/invocations", json={"features": [[1, 2], [3, 4]]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"scores": [21.5, 43.5]}
    r = request(
        app,
        "POST",
        "/invocations",
        content=b"1,2\n3,4\n",
        headers={"content-type": "text/csv", "accept": "text/csv"},
    )
    assert r.headers["content-type"] == "text/csv"
    assert r.text == "21.5\n43.5"
    meta = request(app, "GET", "/v2/models/sm").json()
    assert meta["runtime"]["engine"] == "handler"
    assert "input_fn" in meta["runtime"]["reason"]


def test_script_errors_are_4xx_or_5xx_and_the_server_stays_up(tmp_path: Path) -> None:
    settings = ServerSettings(
        name="sm", model_dir=sagemaker_model_dir(tmp_path), handler=FIXTURES / "inference.py"
    )
    app = serve(settings)
    r = request(app, "POST", "/invocations", content=b"<x/>", headers={"content-type": "text/xml"})
    assert r.status_code == 400
    assert "Unsupported content type: text/xml" in r.json()["error"]
    # predict_fn raises ValueError on rows of the wrong width or on no rows: the caller's
    # input was refused, a 422 with the model's message
    for body, content_type in [
        (b'{"features": [[1, 2, 3]]}', "application/json"),
        (b"1,2,3\n", "text/csv"),
        (b"", "text/csv"),
    ]:
        r = request(
            app, "POST", "/invocations", content=body, headers={"content-type": content_type}
        )
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"] == "input_rejected"
        assert r.json()["error"].startswith("the model refused this input: ValueError: ")
        assert r.json()["request_id"] == r.headers["x-request-id"]
    assert request(app, "GET", "/ping").status_code == 200
    r = request(app, "POST", "/invocations", json={"features": [[1, 1]]})
    assert r.json() == {"scores": [11.5]}


def test_code_inference_py_in_the_model_folder_is_found(tmp_path: Path) -> None:
    folder = sagemaker_model_dir(tmp_path)
    (folder / "code").mkdir()
    shutil.copy(FIXTURES / "inference.py", folder / "code" / "inference.py")
    app = serve(ServerSettings(name="sm", model_dir=folder))
    r = request(app, "POST", "/invocations", json={"features": [[0, 1]]})
    assert r.json() == {"scores": [10.5]}


def test_missing_functions_fall_back_to_the_defaults(sklearn_array_model) -> None:  # type: ignore[no-untyped-def]
    folder, estimator, x = sklearn_array_model
    settings = ServerSettings(name="clf", model_dir=folder, handler=FIXTURES / "predict_only.py")
    app = serve(settings)
    expected = estimator.predict_proba(x[:2])[:, 1]
    # default input_fn: the server's decoders; default output_fn: chosen by Accept
    r = request(app, "POST", "/invocations", json={"instances": x[:2].tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], expected)
    csv = "\n".join(",".join(str(v) for v in row) for row in x[:2].tolist())
    r = request(
        app,
        "POST",
        "/invocations",
        content=csv.encode(),
        headers={"content-type": "text/csv", "accept": "application/jsonlines"},
    )
    np.testing.assert_allclose([float(v) for v in r.text.split()], expected)
    # the defaults keep their contract: 415 and 406
    r = request(app, "POST", "/invocations", content=b"x", headers={"content-type": "text/xml"})
    assert r.status_code == 415
    r = request(app, "POST", "/invocations", json=x[:1].tolist(), headers={"accept": "image/png"})
    assert r.status_code == 406
    # OIP v2 goes through predict_fn too
    body = {
        "inputs": [
            {"name": "input-0", "shape": [2, 3], "datatype": "FP64", "data": x[:2].ravel().tolist()}
        ]
    }
    r = request(app, "POST", "/v2/models/clf/infer", json=body)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"][0]["data"], expected)


def test_a_script_with_no_handler_functions_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "empty.py"
    script.write_text("VALUE = 1\n")
    with pytest.raises(InvalidInput, match="defines none of model_fn"):
        load_servable(ServerSettings(name="x", model_dir=tmp_path, handler=script))
    with pytest.raises(InvalidInput, match="does not exist"):
        load_servable(ServerSettings(name="x", model_dir=tmp_path, handler=tmp_path / "no.py"))


FAILING = """
import json

def model_fn(model_dir):
    return {"bias": 1.0}

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    if data.get("fail") == "predict":
        raise RuntimeError("the model's own failure")
    if data.get("fail") == "lookup":
        return model["no such key"]
    return [model["bias"]]

def output_fn(prediction, accept):
    if accept == "text/csv":
        raise ValueError("output_fn cannot write csv")
    return json.dumps(prediction)
"""


def test_a_handler_failing_for_its_own_reasons_is_still_500(tmp_path: Path) -> None:
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    app = serve(ServerSettings(name="f", model_dir=tmp_path, handler=script))

    def post(body: object, accept: str = "application/json") -> tuple[int, str]:
        r = request(app, "POST", "/invocations", json=body, headers={"accept": accept})
        return r.status_code, r.json()["code"] if r.status_code >= 400 else r.text

    assert post({}) == (200, "[1.0]")
    # not ValueError/TypeError in predict_fn, or anything in output_fn: the model failed
    assert post({"fail": "predict"}) == (500, "model_error")
    assert post({"fail": "lookup"}) == (500, "model_error")
    assert post({}, accept="text/csv") == (500, "model_error")
    # input_fn refusing the body stays a 400
    r = request(
        app, "POST", "/invocations", content=b"{", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"].startswith("input_fn refused the request")
