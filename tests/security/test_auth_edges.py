"""The edges of authentication on a server with auth on: refusals are audited (with a
limit per source), nothing is validated before the caller is known, token ids cannot be
probed, MLflow's acknowledging routes check ``write``, and Host/Origin parse strictly."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.runtime import Runtime
from modelyard.security.refusals import RefusalLimiter
from modelyard.security.service import local_principal
from modelyard.server.app import create_app
from testkit import LiveServer, make_settings

BASE = "http://127.0.0.1:8765"
MLFLOW = "/api/2.0/mlflow"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Secured:
    http: TestClient
    admin: Client
    tokens: dict[str, str]
    runtime: Runtime


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    runtime = Runtime(make_settings(tmp_path, auth=True))
    admin = Client(EmbeddedTransport(runtime, local_principal()))
    tokens = {}
    for name, role in [("root", "admin"), ("sam", "scientist"), ("val", "viewer")]:
        admin.users.create(name, role)  # type: ignore[arg-type]
        tokens[name] = admin.tokens.create(name).token
    with TestClient(create_app(runtime), base_url=BASE) as http:
        yield Secured(http, admin, tokens, runtime)
    runtime.close()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _refusals(admin: Client) -> list[tuple[str, str, str]]:
    return [
        (e.actor, e.operation, e.result)
        for e in admin.audit.list(limit=1000).events
        if e.result == "unauthenticated"
    ]


def test_refused_authentication_is_audited(
    secured: Secured,
) -> None:
    http, admin = secured.http, secured.admin
    assert http.get("/api/v1/datasets").status_code == 401
    bad = http.post("/api/v1/experiments", json={"name": "x"}, headers=bearer("myt_tok-x_y"))
    assert bad.status_code == 401
    mlflow = http.post(f"{MLFLOW}/experiments/create", json={"name": "x"})
    assert mlflow.status_code == 401
    assert http.post("/endpoints/no-such/invocations", content=b"[[1]]").status_code == 401
    assert sorted(_refusals(admin)) == [
        ("anonymous", "datasets.list_datasets", "unauthenticated"),
        ("anonymous", "endpoints.invoke", "unauthenticated"),
        ("anonymous", "mlflow POST /api/2.0/mlflow/experiments/create", "unauthenticated"),
        ("anonymous", "tracking.create_experiment", "unauthenticated"),
    ]
    event = next(e for e in admin.audit.list().events if e.operation == "datasets.list_datasets")
    assert event.origin == "testclient" and event.request_id.startswith("req-")
    assert "requires an API token" in event.detail["message"]


def test_refusal_audit_is_limited_per_source_and_counts_the_rest(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, admin = secured.http, secured.admin
    clock = FakeClock()
    monkeypatch.setattr(secured.runtime, "refusals", RefusalLimiter(3, clock=clock))
    for _ in range(10):
        assert http.get("/api/v1/me").status_code == 401
    assert len(_refusals(admin)) == 3  # 7 suppressed
    clock.now += 61  # the next minute: the first event says how many were left out
    assert http.get("/api/v1/me").status_code == 401
    events = [e for e in admin.audit.list().events if e.result == "unauthenticated"]
    assert len(events) == 4
    assert events[0].detail["suppressed"] == 7
    assert all("suppressed" not in e.detail for e in events[1:])


def test_limiter_windows_sources_apart() -> None:
    clock = FakeClock()
    limiter = RefusalLimiter(2, clock=clock)
    assert [limiter.admit("a") for _ in range(4)] == [0, 0, None, None]
    assert limiter.admit("b") == 0  # another source has its own budget
    clock.now += 30
    assert limiter.admit("a") is None  # same minute
    clock.now += 31
    assert limiter.admit("a") == 3
    assert limiter.admit("a") == 0


def test_anonymous_callers_get_401_before_any_validation(
    secured: Secured,
) -> None:
    http, tokens = secured.http, secured.tokens
    # A body that does not validate: before, a 400 listing the fields it should have.
    for path, body in [
        ("/api/v1/experiments", {"name": 5, "tags": "no"}),
        ("/api/v1/models/m/versions", {}),
        (f"{MLFLOW}/experiments/create", {"name": 5}),
        (f"{MLFLOW}/runs/log-batch", {"metrics": "no"}),
    ]:
        response = http.post(path, json=body)
        assert response.status_code == 401, (path, response.text)
        assert "name" not in response.text and "field" not in response.text
    assert http.post("/api/v1/experiments", content=b"{not json").status_code == 401
    assert http.get("/api/v1/models/m/versions/not-a-number").status_code == 401
    # A known caller without the permission is refused before validation too.
    viewer = http.post("/api/v1/experiments", json={"name": 5}, headers=bearer(tokens["val"]))
    assert viewer.status_code == 403
    # And a caller who may gets the validation error as before.
    sam = http.post("/api/v1/experiments", json={"name": 5}, headers=bearer(tokens["sam"]))
    assert sam.status_code == 400 and "name" in sam.text


def test_another_users_token_is_answered_as_a_missing_one(
    secured: Secured,
) -> None:
    http, admin, tokens = secured.http, secured.admin, secured.tokens
    val_token = admin.tokens.list("val").tokens[0].id
    missing = "tok-" + "0" * 26
    answers = [
        http.delete(f"/api/v1/tokens/{token_id}", headers=bearer(tokens["sam"]))
        for token_id in (val_token, missing)
    ]
    assert [a.status_code for a in answers] == [404, 404]
    assert [a.json()["code"] for a in answers] == ["not_found", "not_found"]
    assert answers[0].json()["message"].replace(val_token, "ID") == answers[1].json()[
        "message"
    ].replace(missing, "ID")
    assert admin.tokens.list("val").tokens[0].revoked_at is None
    # Owners and admins still revoke.
    own = admin.tokens.list("sam").tokens[0].id
    assert http.delete(f"/api/v1/tokens/{own}", headers=bearer(tokens["sam"])).status_code == 200
    root = http.delete(f"/api/v1/tokens/{val_token}", headers=bearer(tokens["root"]))
    assert root.status_code == 200


def test_mlflow_log_inputs_and_outputs_need_write(
    secured: Secured,
) -> None:
    http, admin, tokens = secured.http, secured.admin, secured.tokens
    run = admin.tracking.create_run("e")
    body = {"run_id": run.id}
    for route in ("runs/log-inputs", "runs/outputs"):
        viewer = http.post(f"{MLFLOW}/{route}", json=body, headers=bearer(tokens["val"]))
        assert viewer.status_code == 403, viewer.text
        assert viewer.json()["error_code"] == "PERMISSION_DENIED"
        sam = http.post(f"{MLFLOW}/{route}", json=body, headers=bearer(tokens["sam"]))
        assert sam.status_code == 200, sam.text
    refused = admin.audit.list(actor="val").events
    assert [e.result for e in refused] == ["permission_denied", "permission_denied"]


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[TestClient]:
    runtime = Runtime(make_settings(tmp_path))
    with TestClient(create_app(runtime), base_url=BASE) as http:
        yield http
    runtime.close()


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8765@evil.example",
        "localhost:8765@evil.example",
        "127.0.0.1:8765/evil.example",
        "127.0.0.1:8765:80",
        "127.0.0.1 evil.example",
        "[::1]evil.example",
        "evil.example#127.0.0.1",
    ],
)
def test_a_host_that_is_not_host_port_is_refused(loopback: TestClient, host: str) -> None:
    response = loopback.get("/healthz", headers={"host": host})
    assert response.status_code == 400, host
    assert response.json()["code"] == "invalid_host"


def test_duplicate_host_or_origin_headers_are_refused(loopback: TestClient) -> None:
    two_hosts = [("host", "127.0.0.1:8765"), ("host", "evil.example")]
    assert loopback.get("/healthz", headers=two_hosts).status_code == 400
    # The first Origin foreign, the last this server's own: before, the last one won.
    two_origins = [("origin", "http://evil.example"), ("origin", BASE)]
    response = loopback.post("/api/v1/experiments", json={"name": "x"}, headers=two_origins)
    assert response.status_code == 400 and response.json()["code"] == "invalid_origin"
    assert loopback.get("/api/v1/experiments/x").status_code == 404  # nothing was created
    # One of each is as before.
    one = loopback.post("/api/v1/experiments", json={"name": "x"}, headers={"origin": BASE})
    assert one.status_code == 200
    assert loopback.get("/healthz", headers={"host": "[::1]:8765"}).status_code == 200
    assert loopback.get("/healthz", headers={"host": "LocalHost"}).status_code == 200


def test_live_server_refuses_userinfo_hosts(tmp_path: Path) -> None:
    """Over a real socket (uvicorn), not only the test client."""
    runtime = Runtime(make_settings(tmp_path))
    with LiveServer(runtime) as server:
        host = f"127.0.0.1:{server.port}@evil.example"
        assert httpx.get(server.url + "/healthz", headers={"host": host}).status_code == 400
        assert httpx.get(server.url + "/healthz").status_code == 200
    runtime.close()


def test_refused_authentication_on_an_endpoints_own_port_is_audited(secured: Secured) -> None:
    """The endpoint's own address (its direct server) refuses a missing or bad token with a
    401 that is audited with the caller's address, as the control plane's route does."""
    from modelyard.endpoints.controller import _authorizer
    from modelyard.endpoints.direct import EndpointApp

    class NoRouter:  # a refused caller must never reach the router
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"router.{name} reached before authentication")

    app = EndpointApp("ep", NoRouter(), _authorizer(secured.runtime))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5000))

    async def call(headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://ep") as http:
            return await http.post("/invocations", content=b"[[1]]", headers=headers)

    import asyncio

    assert asyncio.run(call({})).status_code == 401
    assert asyncio.run(call(bearer("myt_tok-x_y"))).status_code == 401
    events = [
        e for e in secured.admin.audit.list(limit=1000).events if e.result == "unauthenticated"
    ]
    assert [(e.actor, e.operation, e.origin) for e in events] == [
        ("anonymous", "endpoints.invoke", "10.1.2.3"),
        ("anonymous", "endpoints.invoke", "10.1.2.3"),
    ]
