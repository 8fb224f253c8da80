"""Serving the console without a browser: headers, the unbuilt case, the API untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelyard.console import web
from modelyard.runtime import Runtime
from modelyard.server.app import create_app
from testkit import make_settings


def test_an_unbuilt_console_says_how_to_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "static_dir", lambda: tmp_path / "not-built")
    runtime = Runtime(make_settings(tmp_path))
    try:
        with TestClient(create_app(runtime), base_url="http://127.0.0.1") as http:
            page = http.get("/")
            assert page.status_code == 503
            assert "make console" in page.text
            assert page.headers["content-security-policy"] == web.CSP
            assert http.get("/console/app.js").status_code == 404
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/api/v1/me").json()["user"] == "local"
    finally:
        runtime.close()


def test_assets_are_served_from_the_built_folder_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = tmp_path / "static"
    (built / "pages").mkdir(parents=True)
    (built / "index.html").write_text("<!doctype html><title>console</title>")
    (built / "pages" / "x.js").write_text("export const x = 1;")
    (tmp_path / "secret.txt").write_text("outside")
    monkeypatch.setattr(web, "static_dir", lambda: built)
    runtime = Runtime(make_settings(tmp_path))
    try:
        with TestClient(create_app(runtime), base_url="http://127.0.0.1") as http:
            page = http.get("/")
            assert page.status_code == 200 and "<title>console</title>" in page.text
            script = http.get("/console/pages/x.js")
            assert script.status_code == 200
            assert "javascript" in script.headers["content-type"]
            assert script.headers["x-content-type-options"] == "nosniff"
            assert script.headers["content-security-policy"] == web.CSP
            for escape in ("/console/../secret.txt", "/console/%2e%2e/secret.txt"):
                assert http.get(escape).status_code == 404, escape
            # Mutations are never routed to the static files.
            assert http.post("/console/pages/x.js").status_code == 405
            # Revalidation: the same content is a 304; a rebuild (new stamp) is served.
            again = http.get(
                "/console/pages/x.js", headers={"if-none-match": script.headers["etag"]}
            )
            assert again.status_code == 304
            (built / "pages" / "x.js").write_text("export const x = 2;")
            (built / ".built").write_text("")
            fresh = http.get(
                "/console/pages/x.js", headers={"if-none-match": script.headers["etag"]}
            )
            assert fresh.status_code == 200 and "x = 2" in fresh.text
            assert http.get("/console/.built").status_code == 404
    finally:
        runtime.close()
