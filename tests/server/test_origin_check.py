"""Cross-site request refusal (CSRF) on a server without auth, where no token is needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from testkit import LiveServer, make_settings

APPROVE = "/api/v1/models/m/versions/1/approve"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, Client]]:
    runtime = Runtime(make_settings(tmp_path, cors_origins=["https://app.example"]))
    admin = Client(EmbeddedTransport(runtime, local_principal()))
    admin.models.register("m", artifact=admin.artifacts.upload(b"m").digest, flavor="sklearn")
    with LiveServer(runtime) as live:
        yield live, admin
    admin.close()
    runtime.close()


@pytest.mark.parametrize(
    "headers",
    [
        # A plain HTML form on another site: no body, no credentials, no preflight.
        {"content-type": "application/x-www-form-urlencoded", "origin": "http://evil.example"},
        {"content-type": "text/plain", "origin": "null"},
        {"origin": "http://127.0.0.1.evil.example"},
        {"sec-fetch-site": "cross-site"},
    ],
)
def test_cross_site_mutations_are_refused_and_change_nothing(
    server: tuple[LiveServer, Client], headers: dict[str, str]
) -> None:
    live, admin = server
    response = httpx.post(live.url + APPROVE, headers=headers)
    assert response.status_code == 403
    assert response.json()["code"] == "cross_origin_refused"
    assert admin.models.version("m", 1).status == "PendingManualApproval"


def test_same_origin_trusted_origins_and_non_browsers_pass(
    server: tuple[LiveServer, Client],
) -> None:
    live, admin = server
    # Reads are never refused, whatever their origin.
    assert httpx.get(live.url + "/api/v1/me", headers={"origin": "http://evil.example"}).is_success
    # The console's own page (same host and port), a CORS origin, and the SDK (no Origin).
    for origin in (live.url, "https://app.example", None):
        headers = {"origin": origin} if origin else {}
        alias = httpx.put(
            live.url + "/api/v1/models/m/aliases/staging", json={"version": 1}, headers=headers
        )
        assert alias.status_code == 200, (origin, alias.text)
    same = httpx.post(live.url + APPROVE, json={}, headers={"sec-fetch-site": "same-origin"})
    assert same.status_code == 200
    assert admin.models.version("m", 1).status == "Approved"
