"""Open Inference Protocol v2: health, metadata, infer round trips and errors."""

from __future__ import annotations

import pytest
from servekit import LinearModel, app_for, request

WEIGHTS = [1.0, 10.0, 100.0]


@pytest.fixture
def app():  # type: ignore[no-untyped-def]
    return app_for(LinearModel(WEIGHTS, proba=True), name="churn", version="4")


@pytest.fixture
def table_app():  # type: ignore[no-untyped-def]
    return app_for(LinearModel(WEIGHTS, columns=["a", "b", "c"]), name="churn", version="4")


def test_health_and_server_metadata(app) -> None:  # type: ignore[no-untyped-def]
    assert request(app, "GET", "/v2/health/live").json() == {"live": True}
    assert request(app, "GET", "/v2/health/ready").status_code == 200
    meta = request(app, "GET", "/v2").json()
    assert meta["name"] == "modelyard" and "version" in meta
    r = request(app, "GET", "/v2/models/churn/ready")
    assert r.json() == {"name": "churn", "ready": True}
    assert request(app, "GET", "/v2/models/churn/versions/4/ready").status_code == 200


def test_model_metadata(app, table_app) -> None:  # type: ignore[no-untyped-def]
    meta = request(app, "GET", "/v2/models/churn").json()
    assert meta["name"] == "churn"
    assert meta["versions"] == ["4"]
    assert meta["platform"] == "python"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 3]}]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert meta["runtime"]["engine"] == "native"
    assert "--no-onnx" in meta["runtime"]["reason"]
    columns = request(table_app, "GET", "/v2/models/churn/versions/4").json()["inputs"]
    assert [c["name"] for c in columns] == ["a", "b", "c"]
    assert all(c["shape"] == [-1] and c["datatype"] == "FP64" for c in columns)


def test_infer_round_trip_tensor(app) -> None:  # type: ignore[no-untyped-def]
    body = {
        "id": "my-request",
        "inputs": [
            {"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 0.5, 0, -1]}
        ],
    }
    r = request(app, "POST", "/v2/models/churn/infer", json=body)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["model_name"] == "churn" and reply["model_version"] == "4"
    assert reply["id"] == "my-request"
    assert reply["outputs"] == [
        {"name": "predict", "datatype": "FP64", "shape": [2], "data": [321.0, -99.5]}
    ]
    body["outputs"] = [{"name": "predict_proba"}, {"name": "predict"}]
    r = request(app, "POST", "/v2/models/churn/versions/4/infer", json=body)
    proba, labels = r.json()["outputs"]
    assert proba["name"] == "predict_proba" and proba["shape"] == [2, 2]
    assert labels["data"] == [321.0, -99.5]
    # nested data is accepted too
    body = {
        "inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "INT64", "data": [[1, 2, 3]]}]
    }
    assert request(app, "POST", "/v2/models/churn/infer", json=body).json()["outputs"][0][
        "data"
    ] == [321.0]


def test_infer_round_trip_columns(table_app) -> None:  # type: ignore[no-untyped-def]
    inputs = [
        {"name": "c", "shape": [2], "datatype": "FP64", "data": [3, -1]},
        {"name": "a", "shape": [2, 1], "datatype": "FP64", "data": [1, 0.5]},
        {"name": "b", "shape": [2], "datatype": "INT32", "data": [2, 0]},
    ]
    r = request(table_app, "POST", "/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [321.0, -99.5]
    assert r.json()["id"] == r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"inputs": []}, 400, "non-empty list"),
        ({}, 400, "inputs"),
        ({"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32"}]}, 400, "data"),
        (
            {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2]}]},
            400,
            "needs 6 values, data holds 2",
        ),
        (
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 3], "datatype": "FP99", "data": [1, 2, 3]}
                ]
            },
            400,
            "FP99",
        ),
        (
            {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
            422,
            "3 features, got 2",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
            422,
            "unknown input 'x'",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [1, 3],
                        "datatype": "BYTES",
                        "data": ["a", "b", "c"],
                    }
                ]
            },
            422,
            "BYTES",
        ),
        (
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
                ],
                "outputs": [{"name": "explain"}],
            },
            400,
            "unknown output 'explain'",
        ),
    ],
)
def test_infer_errors(app, body, status: int, words: str) -> None:  # type: ignore[no-untyped-def]
    r = request(app, "POST", "/v2/models/churn/infer", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_infer_errors_for_columns(table_app) -> None:  # type: ignore[no-untyped-def]
    inputs = [
        {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
        {"name": "b", "shape": [1], "datatype": "FP64", "data": [2]},
    ]
    r = request(table_app, "POST", "/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 422 and "missing input 'c'" in r.json()["error"]


def test_unknown_model_version_and_malformed_json(app) -> None:  # type: ignore[no-untyped-def]
    r = request(app, "GET", "/v2/models/other")
    assert r.status_code == 404 and "'other'" in r.json()["error"]
    r = request(app, "POST", "/v2/models/churn/versions/9/infer", json={"inputs": []})
    assert r.status_code == 404 and "version '9'" in r.json()["error"]
    r = request(
        app,
        "POST",
        "/v2/models/churn/infer",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    r = request(
        app,
        "POST",
        "/v2/models/churn/infer",
        content=b"1,2,3",
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 415
    assert request(app, "GET", "/v2/models/churn/infer").status_code == 405
    assert request(app, "GET", "/v2/models/churn/explain").status_code == 404


def test_model_error_on_infer_is_500_then_healthy(app) -> None:  # type: ignore[no-untyped-def]
    body = {
        "inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [-999, 0, 0]}]
    }
    r = request(app, "POST", "/v2/models/churn/infer", json=body)
    assert r.status_code == 500
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert "poisoned row" in r.json()["error"]
    assert request(app, "GET", "/v2/health/ready").status_code == 200
