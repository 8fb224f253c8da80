"""Endpoints under a real ``modelyard up`` process: its log, and its replicas when it stops."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from epkit import ROWS, UpServer, sklearn_version, stop_all_replicas

import modelyard as my

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
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
        log = server.log()
    finally:
        stop_all_replicas(home)
    later = log[log.index("POST /api/v1/endpoints ") :]
    assert re.search(r'"POST /endpoints/logged/invocations HTTP/1\.1" 200', later), log
    assert re.search(r'"GET /api/v1/endpoints\?[^"]*HTTP/1\.1" 200', later), log
    assert "Shutting down" in later and "Finished server process" in later, log
    # Only the control plane's own start is announced (not each endpoint's server).
    assert log.count("Uvicorn running on") == 1, log
