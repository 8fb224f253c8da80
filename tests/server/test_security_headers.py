"""Browser safety headers on every response (server/headers.py) and an offline /docs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.console import CSP as CONSOLE_CSP
from modelyard.console import static_dir
from modelyard.runtime import Runtime
from modelyard.server.app import create_app
from modelyard.server.headers import API_CSP, content_disposition
from testkit import make_settings

BASE = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    runtime = Runtime(make_settings(tmp_path))
    with TestClient(create_app(runtime), base_url="http://127.0.0.1:8765") as c:
        yield c
    runtime.close()


def assert_base_headers(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    for name, value in BASE.items():
        assert headers.get(name) == value, (name, dict(headers))
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/api/v1/datasets", 200),
        ("GET", "/api/v1/datasets/nope", 404),
        ("GET", "/api/v1/datasets/bad name!", 400),
        ("GET", "/api/2.0/mlflow/experiments/search", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/no/such/page", 404),
    ],
)
def test_api_responses_carry_the_strict_api_policy(
    http: TestClient, method: str, path: str, status: int
) -> None:
    response = http.request(method, path)
    assert response.status_code == status
    assert_base_headers(response)
    assert response.headers["content-security-policy"] == API_CSP
    assert "default-src 'none'" in API_CSP


def test_refusals_by_the_outer_middleware_carry_them_too(http: TestClient) -> None:
    response = http.get("/healthz", headers={"host": "evil.example.com"})
    assert response.status_code == 421
    assert_base_headers(response)
    response = http.post("/api/v1/datasets", json={}, headers={"origin": "http://evil.example"})
    assert response.status_code == 403
    assert_base_headers(response)


def test_the_console_keeps_its_own_policy(http: TestClient) -> None:
    response = http.get("/")
    assert_base_headers(response)
    assert response.headers["content-security-policy"] == CONSOLE_CSP
    assert len(response.headers.get_list("content-security-policy")) == 1


def test_artifact_responses_are_sandboxed_attachments(http: TestClient) -> None:
    digest = http.put("/api/v1/artifacts", content=b"<svg onload=alert(1)>").json()["digest"]
    response = http.get(f"/api/v1/artifacts/{digest}")
    assert response.status_code == 200
    assert_base_headers(response)
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == f'attachment; filename="{digest}"'
    assert response.headers["content-security-policy"].startswith("sandbox; default-src 'none'")
    assert len(response.headers.get_list("content-security-policy")) == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model.pkl", 'attachment; filename="model.pkl"'),
        (
            'a"b\\c\r\nSet-Cookie: x',
            'attachment; filename="a_b_c__Set-Cookie_ x"; '
            "filename*=UTF-8''a%22b%5Cc%0D%0ASet-Cookie%3A%20x",
        ),
        (
            "résumé.txt",
            "attachment; filename=\"resume.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt",
        ),
        ("", 'attachment; filename="artifact"'),
        ("...", "attachment; filename=\"artifact\"; filename*=UTF-8''..."),
    ],
)
def test_attachment_filenames_cannot_break_the_header(name: str, expected: str) -> None:
    assert content_disposition(name) == expected


@pytest.mark.skipif(
    not (static_dir() / "vendor" / "swagger-ui-bundle.js").is_file(),
    reason="the console's assets are not built (make console)",
)
def test_docs_work_offline_under_a_csp_without_inline_scripts(http: TestClient) -> None:
    response = http.get("/docs")
    assert response.status_code == 200
    assert_base_headers(response)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "http" not in csp
    page = response.text
    urls = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert urls and all(u.startswith("/") or u.startswith("data:") for u in urls), urls
    assert "//" not in "".join(u for u in urls if not u.startswith("data:"))
    # No inline script: every <script> has a src.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    for url in urls:
        if url.startswith("/"):
            assert http.get(url).status_code == 200, url
    assert "SwaggerUIBundle" in http.get("/docs/init.js").text
