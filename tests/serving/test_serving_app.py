"""/ping and /invocations: every content type in and out, validation, limits, model errors."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import httpx
import numpy as np
import orjson
import pytest
from servekit import LinearModel, app_for, call, request

WEIGHTS = [1.0, 10.0, 100.0]
ROWS = [[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]
EXPECTED = [321.0, -99.5]


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture
def app():  # type: ignore[no-untyped-def]
    return app_for(LinearModel(WEIGHTS), name="demo", version="3")


@pytest.fixture
def table_app():  # type: ignore[no-untyped-def]
    return app_for(LinearModel(WEIGHTS, columns=["a", "b", "c"]), name="demo")


def test_ping_and_identity_headers(app) -> None:  # type: ignore[no-untyped-def]
    r = request(app, "GET", "/ping")
    assert r.status_code == 200
    assert r.headers["x-modelyard-model"] == "demo"
    assert r.headers["x-modelyard-model-version"] == "3"
    assert r.headers["x-request-id"].startswith("req-")


def test_request_id_is_echoed_when_sane(app) -> None:  # type: ignore[no-untyped-def]
    r = request(app, "GET", "/ping", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = request(app, "GET", "/ping", headers={"x-request-id": "bad id\twith spaces"})
    assert r.headers["x-request-id"].startswith("req-")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/csv", b"1,2,3\n0.5,0,-1\n"),
        ("text/csv; charset=utf-8", b"1,2,3\r\n0.5,0,-1"),
        ("application/json", orjson.dumps({"instances": ROWS})),
        ("application/json", orjson.dumps({"inputs": ROWS})),
        ("application/json", orjson.dumps(ROWS)),
        ("application/jsonlines", b"[1,2,3]\n[0.5,0,-1]\n"),
        ("application/x-npy", npy(np.asarray(ROWS))),
        ("application/x-npy", npy(np.asarray(ROWS, dtype=np.float32))),
    ],
)
def test_every_content_type_in(app, content_type: str, body: bytes) -> None:  # type: ignore[no-untyped-def]
    r = request(app, "POST", "/invocations", content=body, headers={"content-type": content_type})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"predictions": EXPECTED}


def test_single_flat_row_and_npy_vector(app) -> None:  # type: ignore[no-untyped-def]
    r = request(app, "POST", "/invocations", json=[1, 2, 3])
    assert r.json() == {"predictions": [321.0]}
    r = request(
        app,
        "POST",
        "/invocations",
        content=npy(np.asarray([1.0, 2.0, 3.0])),
        headers={"content-type": "application/x-npy"},
    )
    assert r.json() == {"predictions": [321.0]}


@pytest.mark.parametrize(
    ("accept", "check"),
    [
        ("text/csv", lambda r: r.text == "321.0\n-99.5\n"),
        ("application/jsonlines", lambda r: r.text == "321.0\n-99.5\n"),
        (
            "application/x-npy",
            lambda r: np.load(io.BytesIO(r.content)).tolist() == EXPECTED,
        ),
        ("application/json", lambda r: r.json() == {"predictions": EXPECTED}),
        ("*/*", lambda r: r.json() == {"predictions": EXPECTED}),
        ("text/html;q=0.9, text/csv;q=0.5", lambda r: r.text.startswith("321.0")),
    ],
)
def test_every_format_out(app, accept: str, check) -> None:  # type: ignore[no-untyped-def]
    r = request(app, "POST", "/invocations", json={"instances": ROWS}, headers={"accept": accept})
    assert r.status_code == 200, r.text
    assert check(r)


def test_table_rows_by_column_name(table_app) -> None:  # type: ignore[no-untyped-def]
    objects = [{"c": 3, "b": 2, "a": 1}, {"a": 0.5, "b": 0, "c": -1}]
    r = request(table_app, "POST", "/invocations", json=objects)
    assert r.json() == {"predictions": EXPECTED}
    r = request(table_app, "POST", "/invocations", json={"inputs": {"a": [1], "b": [2], "c": [3]}})
    assert r.json() == {"predictions": [321.0]}
    lines = b'{"b": 2, "a": 1, "c": 3}\n{"a": 0.5, "b": 0, "c": -1}\n'
    r = request(
        table_app,
        "POST",
        "/invocations",
        content=lines,
        headers={"content-type": "application/jsonlines", "accept": "application/jsonlines"},
    )
    assert r.text == "321.0\n-99.5\n"


def test_csv_header_row_reorders_columns(table_app) -> None:  # type: ignore[no-untyped-def]
    r = request(
        table_app,
        "POST",
        "/invocations",
        content=b"c,a,b\n3,1,2\n",
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [321.0]}


@pytest.mark.parametrize(
    ("content_type", "body", "status", "words"),
    [
        ("application/json", b'{"instances": [[1,2,3]', 400, "malformed JSON"),
        ("application/jsonlines", b"[1,2,3]\n[1,2\n", 400, "line 2"),
        ("application/json", b'{"rows": [[1,2,3]]}', 400, "instances"),
        ("application/json", b"[[1,2,3],[1,2]]", 422, "row 2: expected 3 features, got 2"),
        ("application/json", b"[[1,2]]", 422, "expected 3 features, got 2"),
        ("application/json", b'[[1,"x",3]]', 422, "row 1, column 2"),
        ("text/csv", b"1,2,3\n4,five,6\n", 422, "row 2, column 2: 'five' is not a number"),
        ("text/csv", b"1,2,3,4\n", 422, "expected 3 features, got 4"),
        ("text/csv", b"\xff\xfe1,2", 400, "not UTF-8"),
        ("application/x-npy", b"not an npy file", 400, ".npy"),
        ("application/x-npy", npy(np.asarray([["a", "b", "c"]])), 422, "not numeric"),
        ("application/x-npy", npy(np.zeros((2, 4))), 422, "3 features, got 4"),
        ("application/json", b"", 400, "empty"),
        ("application/json", b"[]", 400, "no rows"),
        ("application/json", b'[{"a": 1}]', 422, "column names"),
    ],
)
def test_bad_bodies_get_a_4xx_naming_the_problem(  # type: ignore[no-untyped-def]
    app, content_type: str, body: bytes, status: int, words: str
) -> None:
    r = request(app, "POST", "/invocations", content=body, headers={"content-type": content_type})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_table_errors_name_the_column(table_app) -> None:  # type: ignore[no-untyped-def]
    r = request(table_app, "POST", "/invocations", json=[{"a": 1, "b": 2}])
    assert r.status_code == 422
    assert "missing column 'c'" in r.json()["error"]
    r = request(table_app, "POST", "/invocations", json=[{"a": 1, "b": 2, "c": 3, "d": 4}])
    assert r.status_code == 422
    assert "unknown column 'd'" in r.json()["error"]
    r = request(table_app, "POST", "/invocations", json=[[1, "x", 3]])
    assert "column 2 ('b')" in r.json()["error"]


def test_unsupported_content_type_is_415_and_accept_406(app) -> None:  # type: ignore[no-untyped-def]
    r = request(
        app, "POST", "/invocations", content=b"<x/>", headers={"content-type": "application/xml"}
    )
    assert r.status_code == 415
    assert "application/xml" in r.json()["error"] and "text/csv" in r.json()["error"]
    r = request(app, "POST", "/invocations", json=ROWS, headers={"accept": "text/html"})
    assert r.status_code == 406
    assert "text/html" in r.json()["error"]


def test_body_over_the_limit_is_413(app) -> None:  # type: ignore[no-untyped-def]
    small = app_for(LinearModel(WEIGHTS), max_payload_bytes=64)
    r = request(
        small, "POST", "/invocations", content=b"1,2,3\n" * 20, headers={"content-type": "text/csv"}
    )
    assert r.status_code == 413
    assert "64-byte limit" in r.json()["error"]

    async def chunked(client: httpx.AsyncClient, lines: int = 20) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(lines):
                yield b"1,2,3\n"

        return await client.post(
            "/invocations", content=body(), headers={"content-type": "text/csv"}
        )

    r = call(small, chunked)
    assert r.status_code == 413
    assert "content-length" not in {k.lower() for k in r.request.headers}
    # under the limit, a chunked body is fine
    r = call(small, lambda client: chunked(client, lines=2))
    assert r.json() == {"predictions": [321.0, 321.0]}


def test_model_error_is_500_with_request_id_and_server_stays_healthy() -> None:
    app = app_for(LinearModel(WEIGHTS))

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        bad = await client.post(
            "/invocations", json=[[-999, 0, 0]], headers={"x-request-id": "r-1"}
        )
        ping = await client.get("/ping")
        good = await client.post("/invocations", json=[[1, 2, 3]])
        return [bad, ping, good]

    bad, ping, good = call(app, scenario)
    assert bad.status_code == 500
    assert bad.json()["request_id"] == "r-1"
    assert "poisoned row" in bad.json()["error"] and "r-1" in bad.json()["error"]
    assert ping.status_code == 200
    assert good.json() == {"predictions": [321.0]}


def test_unknown_route_and_wrong_method(app) -> None:  # type: ignore[no-untyped-def]
    assert request(app, "GET", "/nope").status_code == 404
    r = request(app, "GET", "/invocations")
    assert r.status_code == 405 and "POST" in r.json()["error"]
    assert request(app, "POST", "/ping").status_code == 405


def test_execution_parameters() -> None:
    app = app_for(LinearModel(WEIGHTS), max_payload_bytes=8 * 1024 * 1024)
    r = request(app, "GET", "/execution-parameters")
    assert r.json() == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 8,
    }


def test_ping_is_503_until_the_model_is_loaded_and_reports_a_failed_load() -> None:
    import threading

    from modelyard.serving import ModelServer, ServerSettings

    release = threading.Event()

    def slow_loader():  # type: ignore[no-untyped-def]
        release.wait(10)
        return app_for(LinearModel(WEIGHTS)).servable

    app = ModelServer(ServerSettings(name="demo"), loader=slow_loader)
    app.start_loading()
    r = request(app, "GET", "/ping")
    assert r.status_code == 503 and r.json()["status"] == "loading"
    assert request(app, "POST", "/invocations", json=ROWS).status_code == 503
    release.set()
    for _ in range(200):
        if app.ready:
            break
        threading.Event().wait(0.02)
    assert request(app, "GET", "/ping").status_code == 200

    def broken() -> None:
        raise FileNotFoundError("model.skops is missing")

    failed = ModelServer(ServerSettings(name="demo"), loader=broken)  # type: ignore[arg-type]
    failed.start_loading()
    for _ in range(200):
        if failed.load_error:
            break
        threading.Event().wait(0.02)
    r = request(failed, "GET", "/ping")
    assert r.status_code == 503
    assert r.json()["status"] == "failed" and "model.skops is missing" in r.json()["error"]
