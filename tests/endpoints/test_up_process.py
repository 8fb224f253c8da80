"""Endpoints under a real ``modelyard up`` process: its log, and its replicas when it stops."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import psutil
from epkit import ROWS, UpServer, sklearn_version, stop_all_replicas

import modelyard as my
from modelyard.endpoints.controller import OWNER_FILE

BODY = json.dumps(ROWS)


def test_the_log_keeps_every_request_and_the_shutdown_after_an_endpoint_is_created(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    server = UpServer(home, tmp_path / "up.log")
    try:
        with my.connect(server.url) as client:
            v = sklearn_version(client, tmp_path)
            client.endpoints.create("logged", [{"model": "churn", "version": v}])
            client.endpoints.wait("logged")
            # Its own address is served by the controller: the first server started after
            # the control plane's, which used to silence the control plane's log.
            deadline = time.monotonic() + 30
            while client.endpoints.describe("logged").port is None:
                assert time.monotonic() < deadline, "the endpoint got no port of its own"
                time.sleep(0.1)
            assert client.endpoints.invoke("logged", BODY).status == 200
            client.endpoints.list()
            replica = client.endpoints.describe("logged").replicas[0]
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
        log = server.log()
        # Stopping the server stopped its replica too (supervisor and model server).
        assert replica.pid is not None and not _running(replica.pid)
        assert not _supervisors_alive(home)
    finally:
        stop_all_replicas(home)
    later = log[log.index("POST /api/v1/endpoints ") :]
    assert re.search(r'"POST /endpoints/logged/invocations HTTP/1\.1" 200', later), log
    assert re.search(r'"GET /api/v1/endpoints\?[^"]*HTTP/1\.1" 200', later), log
    assert "Shutting down" in later and "Finished server process" in later, log
    # Only the control plane's own start is announced (not each endpoint's server).
    assert log.count("Uvicorn running on") == 1, log


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited child of a dead parent waits for PID 1 to reap it,
    which may never happen in a container)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _supervisors_alive(home: Path) -> list[int]:
    pids = []
    for sup in (home / "endpoints" / "replicas").glob("*/*/supervisor.json"):
        data = json.loads(sup.read_text())
        pids += [p for p in (data["pid"], data["child_pid"]) if _running(p)]
    return pids


def test_replicas_of_a_killed_server_stop_on_their_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = UpServer(home, tmp_path / "up.log", env={"MODELYARD_REPLICA_ORPHAN_GRACE_S": "1"})
    try:
        with my.connect(server.url) as client:
            v = sklearn_version(client, tmp_path)
            client.endpoints.create("orphan", [{"model": "churn", "version": v}])
            client.endpoints.wait("orphan")
        assert json.loads((home / "endpoints" / OWNER_FILE).read_text())["pid"] == server.proc.pid
        assert len(_supervisors_alive(home)) == 2
        server.stop(signal.SIGKILL)  # nothing stops the replica: it must notice by itself
        deadline = time.monotonic() + 60
        while _supervisors_alive(home):
            assert time.monotonic() < deadline, "the orphaned replica kept running"
            time.sleep(0.2)
        status = next((home / "endpoints" / "replicas").glob("*/*/status.json"))
        assert json.loads(status.read_text())["exit_code"] == 0  # a graceful stop
    finally:
        stop_all_replicas(home)
