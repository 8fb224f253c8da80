"""Fixtures for the endpoints tests: a control plane with its controller and HTTP server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelyard.client.sdk import Client, connect
from modelyard.runtime import Runtime
from testkit import LiveServer, make_settings

sys.path.insert(0, str(Path(__file__).parent))

from epkit import stop_all_replicas


@dataclass
class Plane:
    runtime: Runtime
    server: LiveServer
    client: Client
    folder: Path

    @property
    def home(self) -> Path:
        return self.folder / "home"


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    """A runtime with its endpoints controller, served over HTTP; a remote client."""
    runtime = Runtime(make_settings(tmp_path))
    runtime.start_background()
    try:
        with LiveServer(runtime) as server:
            client = connect(server.url)
            try:
                yield Plane(runtime, server, client, tmp_path)
            finally:
                client.close()
    finally:
        runtime.close()
        stop_all_replicas(tmp_path / "home")
