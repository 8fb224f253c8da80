"""HTTP behaviour of the control plane: health, docs, errors, Host checks, CORS, limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.runtime import Runtime
from modelyard.server.app import create_app
from testkit import make_settings


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    runtime = Runtime(make_settings(tmp_path, max_upload_bytes=1024))
    with TestClient(create_app(runtime), base_url="http://127.0.0.1:8765") as c:
        yield c
    runtime.close()


def test_health_ready_and_docs(http: TestClient) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz").json()
    assert ready == {"ready": True, "checks": {"metadata": "ok", "artifacts": "ok"}}
    spec = http.get("/openapi.json").json()
    assert "/api/v1/datasets/{name}/versions" in spec["paths"]
    assert http.get("/docs").status_code == 200


def test_foreign_host_header_is_refused(http: TestClient) -> None:
    response = http.get("/healthz", headers={"host": "evil.example.com"})
    assert response.status_code == 421
    assert response.json()["code"] == "invalid_host"
    assert http.get("/healthz", headers={"host": "localhost:8765"}).status_code == 200
    assert http.get("/healthz", headers={"host": "[::1]:8765"}).status_code == 200


def test_cors_is_closed_by_default(http: TestClient) -> None:
    response = http.options(
        "/api/v1/datasets",
        headers={"origin": "http://evil.example.com", "access-control-request-method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers
    response = http.get("/api/v1/datasets", headers={"origin": "http://evil.example.com"})
    assert "access-control-allow-origin" not in response.headers


def test_errors_are_json_with_a_code_and_request_id(http: TestClient) -> None:
    response = http.get("/api/v1/datasets/nope", headers={"x-request-id": "abc-123"})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found" and "'nope'" in body["message"]
    assert body["request_id"] == "abc-123" and response.headers["x-request-id"] == "abc-123"

    response = http.get("/api/v1/datasets/bad name!")
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"

    response = http.post(
        "/api/v1/datasets/x/versions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400

    response = http.post("/api/v1/datasets/x/versions", json={"files": []})
    assert response.status_code == 400
    assert "files" in response.json()["message"]

    assert http.get("/api/v1/no/such/route").json()["code"] == "not_found"
    assert http.delete("/api/v1/datasets").status_code == 405


def test_upload_over_the_limit_is_413_and_stores_nothing(http: TestClient, tmp_path: Path) -> None:
    response = http.put(
        "/api/v1/artifacts",
        content=b"x" * 2048,
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    objects = list((tmp_path / "home" / "artifacts" / "objects").rglob("*"))
    assert [p for p in objects if p.is_file()] == []
    ok = http.put(
        "/api/v1/artifacts", content=b"small", headers={"content-type": "application/octet-stream"}
    )
    assert ok.status_code == 200 and ok.json()["size"] == 5


def test_upload_with_wrong_expected_digest_is_refused(http: TestClient) -> None:
    response = http.put(
        "/api/v1/artifacts",
        params={"expected_digest": "0" * 64},
        content=b"data",
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 400
    assert "expected" in response.json()["message"]


def test_limit_follows_the_route_not_the_content_type(http: TestClient, tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"x" * 700

    # A chunked upload (no content-length) over the limit is a 413, not a 500.
    response = http.put(
        "/api/v1/artifacts", content=chunks(), headers={"content-type": "application/octet-stream"}
    )
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    # Leaving out the content type does not change which limit applies.
    response = http.put("/api/v1/artifacts", content=b"y" * 2048, headers={"content-type": ""})
    assert response.status_code == 413
    objects = [p for p in (tmp_path / "home" / "artifacts" / "objects").rglob("*") if p.is_file()]
    assert objects == []


def test_anonymous_upload_is_refused_before_the_body_is_stored(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path, auth=True))
    with TestClient(create_app(runtime), base_url="http://127.0.0.1:8765") as c:
        response = c.put(
            "/api/v1/artifacts",
            content=b"z" * 100,
            headers={"content-type": "application/octet-stream"},
        )
    runtime.close()
    assert response.status_code == 401
    objects = [p for p in (tmp_path / "home" / "artifacts" / "objects").rglob("*") if p.is_file()]
    assert objects == []
