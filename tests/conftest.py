"""Shared fixtures: isolated homes, the real PostgreSQL server, both transports."""

from __future__ import annotations

import gc
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.client.sdk import Client, connect
from modelyard.runtime import Runtime
from testkit import LiveServer, make_settings

pytest_plugins = ["fixtures.seaweed", "fixtures.ray_cluster"]

PG_ADMIN_URL = os.environ.get("MODELYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's ~/.modelyard or a server URL from the shell."""
    for var in (
        "MODELYARD_URL",
        "MODELYARD_TOKEN",
        "MODELYARD_DB",
        "MODELYARD_ARTIFACTS",
        "MODELYARD_AUTH",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    # Jobs start cold: a warm server per test home would import the ML libraries (~4
    # CPU-seconds) for every test that runs a job. tests/jobs/test_warm_start.py turns it on.
    monkeypatch.setenv("MODELYARD_WARM_START", "0")
    # The transform keeps verified ONNX models for later jobs: in the test folder, not ~/.cache.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """With MODELYARD_TEST_COLLECT=1, collect after each test, so an unclosed file, socket
    or process (a ResourceWarning, an error) is reported by the test that left it rather
    than by whichever test runs when the collector gets to it. Off by default: it doubles
    the CPU time of some directories (tests/data: 16 s -> 39 s)."""
    yield
    if os.environ.get("MODELYARD_TEST_COLLECT") == "1":
        gc.collect()


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the real server; dropped afterwards."""
    if not _pg_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (required in CI)")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    import psycopg

    name = f"modelyard_t_{secrets.token_hex(6)}"
    admin = PG_ADMIN_URL
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both metadata stores: every test using this runs against SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def runtime(tmp_path: Path, db_url: str) -> Iterator[Runtime]:
    rt = Runtime(make_settings(tmp_path, db_url=db_url))
    yield rt
    rt.close()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    rt = Runtime(make_settings(tmp_path))
    with LiveServer(rt) as server:
        yield server
    rt.close()


@pytest.fixture(params=["embedded", "remote"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    """The SDK through both transports (the parity fixture)."""
    if request.param == "embedded":
        c = connect(home=tmp_path / "home")
        yield c
        c.close()
        return
    server: LiveServer = request.getfixturevalue("live_server")
    c = connect(server.url)
    yield c
    c.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests run last, after everything that does not need Chromium (a
    replica that stayed Starting in endpoint tests after them was a controller race,
    fixed in ``endpoints/controller.py``: the order is kept as a precaution)."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/console/"))
