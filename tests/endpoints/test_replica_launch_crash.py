"""A controller that dies between launching a replica's attempt and recording it: the next
one must not launch that attempt again (no replica is ever launched twice)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from controller_conformance import Crash, halt
from modelyard.endpoints.controller import EndpointController
from modelyard.endpoints.placement import PlacementContext, Started, register_placement
from modelyard.endpoints.store import EndpointRow, ReplicaRow
from modelyard.runtime import Runtime
from testkit import make_settings

WAIT = 30.0  # seconds: a failed start waits 2 s before the next attempt


class _Ping(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class FakePlacement:
    """Starts nothing: every attempt 'listens' on the test's /ping server."""

    kind = "fake"
    port = 0
    launched: list[tuple[str, int]] = []
    killed: set[tuple[str, int]] = set()
    crash: Any = None  # called once, right after a launch: the controller dies there

    def __init__(self, backend: str, context: PlacementContext) -> None:
        pass

    def launch(self, replica: ReplicaRow, attempt: int, variant: dict[str, Any]) -> Started:
        FakePlacement.launched.append((replica.id, attempt))
        crash, FakePlacement.crash = FakePlacement.crash, None
        if crash is not None:
            crash()
        return Started(host="127.0.0.1", port=FakePlacement.port)

    def alive(self, replica: ReplicaRow) -> bool:
        key = (replica.id, replica.attempt)
        return key in self.launched and key not in self.killed

    def adopt(self, replica: ReplicaRow) -> bool:
        return self.alive(replica)

    def server_pid(self, replica: ReplicaRow) -> int | None:
        return None

    def exit_message(self, replica: ReplicaRow) -> str:
        return "stopped"

    def logs(self, replica: ReplicaRow, max_bytes: int = 0) -> str:
        return ""

    def stop(self, replica: ReplicaRow) -> None:
        self.killed.add((replica.id, replica.attempt))

    def kill(self, replica: ReplicaRow) -> None:
        self.killed.add((replica.id, replica.attempt))

    def failed(self, replica: ReplicaRow) -> None:
        self.kill(replica)

    def remove(self, replica: ReplicaRow) -> None:
        pass

    def shutdown(self, replicas: list[ReplicaRow]) -> list[str]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def ping() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _replicas(runtime: Runtime) -> list[tuple[str, str, int, int | None]]:
    with runtime.db.transaction(write=False) as session:
        return [
            (r.id, r.state, r.attempt, r.port)
            for r in session.scalars(select(ReplicaRow).order_by(ReplicaRow.id))
        ]


def test_an_attempt_launched_by_a_controller_that_died_before_recording_it_is_not_launched_again(
    tmp_path: Path, ping: int
) -> None:
    register_placement("fake", FakePlacement)
    FakePlacement.port, FakePlacement.launched, FakePlacement.killed = ping, [], set()
    runtime = Runtime(make_settings(tmp_path))
    first = EndpointController(runtime, lease_s=0.5)
    died = threading.Event()

    def crash() -> None:
        halt(first)  # its threads stop; its lease is kept, as by a process that died
        died.set()
        raise Crash("after launching, before recording the launch")

    FakePlacement.crash = crash
    reconcile = first.reconcile

    def dies_quietly(key: str) -> float | None:
        try:
            return reconcile(key)
        except Crash:
            return None  # a dead process says nothing more

    first.reconcile = dies_quietly  # type: ignore[method-assign]
    second = EndpointController(runtime, lease_s=0.5)
    try:
        assert first.start() is True
        with runtime.db.transaction() as session:
            variant = {
                "id": "var_a",
                "name": "primary",
                "model": "m",
                "version": 1,
                "replicas": 1,
                "shadow": False,
                "weight": 1.0,
                "placement": {"backend": "fake://test"},
            }
            session.add(
                EndpointRow(
                    id="ep_fake",
                    name="fake",
                    status="Creating",
                    message="",
                    variants=[variant],
                    traffic={"var_a": 1.0},
                    created_by="test",
                )
            )
        first.enqueue("fake")
        assert died.wait(WAIT), "the first controller never launched the replica"
        [(rid, _, _, _)] = _replicas(runtime)
        second.start()  # it takes over once the dead controller's lease lapses
        deadline = time.monotonic() + WAIT
        while [s for _, s, _, _ in _replicas(runtime)] != ["Ready"]:
            assert time.monotonic() < deadline, f"the replica never came up: {_replicas(runtime)}"
            time.sleep(0.05)
        # Attempt 1 was stopped (whatever of it ran) and attempt 2 launched: none twice.
        assert FakePlacement.launched == [(rid, 1), (rid, 2)]
        assert (rid, 1) in FakePlacement.killed
        assert _replicas(runtime) == [(rid, "Ready", 2, ping)]
    finally:
        FakePlacement.crash = None
        second.stop()
        first.stop()
        runtime.close()
