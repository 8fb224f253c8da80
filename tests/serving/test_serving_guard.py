"""A model server's admission rules: the Host names it answers and a replica's secret."""

from __future__ import annotations

import pytest
from servekit import LinearModel, app_for, request

from modelyard.serving.process import allowed_hosts
from modelyard.serving.settings import SECRET_HEADER

WEIGHTS = [1.0, 10.0, 100.0]


def test_which_host_names_are_answered() -> None:
    loopback = ("127.0.0.1", "::1", "localhost")
    assert set(allowed_hosts("127.0.0.1", [])) == set(loopback)
    assert set(allowed_hosts("::1", ["Models.Internal"])) == {*loopback, "models.internal"}
    assert allowed_hosts("0.0.0.0", []) == ()  # a server bound for everyone, e.g. a container
    assert set(allowed_hosts("10.1.2.3", [], always=True)) == {*loopback, "10.1.2.3"}


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8080", 200),
        ("localhost", 200),
        ("[::1]:8080", 200),
        ("10.1.2.3:9000", 200),
        ("evil.example", 421),
        ("127.0.0.1:8080@evil.example", 421),
        ("127.0.0.1.evil.example", 421),
        ("", 421),
    ],
)
def test_a_foreign_host_is_421(host: str, status: int) -> None:
    app = app_for(LinearModel(WEIGHTS), allowed_hosts=allowed_hosts("10.1.2.3", [], always=True))
    r = request(app, "GET", "/ping", headers={"host": host})
    assert r.status_code == status, r.text


def test_a_replica_answers_only_with_its_secret() -> None:
    app = app_for(LinearModel(WEIGHTS), secret="s3cret")
    for headers in ({}, {SECRET_HEADER: "s3cret-not"}, {SECRET_HEADER: ""}):
        for method, path in [("GET", "/ping"), ("POST", "/invocations"), ("GET", "/v2")]:
            r = request(app, method, path, headers=headers, json=[[1, 2, 3]])
            assert r.status_code == 403 and "router" in r.json()["error"], (path, r.text)
    r = request(app, "POST", "/invocations", headers={SECRET_HEADER: "s3cret"}, json=[[1, 2, 3]])
    assert r.json() == {"predictions": [321.0]}
    # a server without a secret (started by hand) needs none
    assert request(app_for(LinearModel(WEIGHTS)), "GET", "/ping").status_code == 200
