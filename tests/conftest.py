"""Shared fixtures: isolated homes, the real PostgreSQL server, both transports."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from modelyard.client.sdk import Client, connect
from modelyard.config import Settings
from modelyard.runtime import Runtime
from modelyard.server.app import create_app

pytest_plugins = ["fixtures.seaweed"]

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


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.from_env(home=tmp_path / "home", **overrides)


@pytest.fixture
def runtime(tmp_path: Path, db_url: str) -> Iterator[Runtime]:
    rt = Runtime(make_settings(tmp_path, db_url=db_url))
    yield rt
    rt.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server in a background thread, on a free loopback port."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(runtime),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


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
