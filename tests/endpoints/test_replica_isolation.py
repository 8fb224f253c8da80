"""Replicas answer only their endpoint's router: its secret, and a loopback Host."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import httpx
import psutil
from epkit import ROWS, sklearn_version

from conftest import Plane
from modelyard.endpoints.replica_auth import KEY_FILE, SECRET_HEADER, ReplicaKeys

BODY = json.dumps(ROWS)


def test_a_replica_refuses_everyone_but_the_router(plane: Plane) -> None:
    c = plane.client
    v = sklearn_version(c, plane.folder)
    c.endpoints.create("guarded", [{"model": "churn", "version": v}])
    replica = c.endpoints.wait("guarded").replicas[0]
    url = f"http://127.0.0.1:{replica.port}"
    secret = ReplicaKeys(plane.home).secret(replica.id, 1)

    # Without the secret (or with another one), nothing is answered, /ping included.
    for headers in ({}, {SECRET_HEADER: "0" * 64}):
        assert httpx.get(f"{url}/ping", headers=headers).status_code == 403
        refused = httpx.post(f"{url}/invocations", content=BODY, headers=headers)
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    # A foreign Host is refused even with the secret (DNS rebinding).
    evil = httpx.post(
        f"{url}/invocations", content=BODY, headers={SECRET_HEADER: secret, "host": "evil.example"}
    )
    assert evil.status_code == 421, evil.text
    json_ = {"content-type": "application/json"}
    ok = httpx.post(f"{url}/invocations", content=BODY, headers={SECRET_HEADER: secret, **json_})
    assert ok.status_code == 200, ok.text

    # The router sends its own secret, whatever header a client sends it.
    routed = httpx.post(
        f"{plane.server.url}/endpoints/guarded/invocations",
        content=BODY,
        headers={"content-type": "application/json", SECRET_HEADER: "forged"},
    )
    assert routed.status_code == 200, routed.text

    # The secret is on no command line; the key and the launch file are this user's only.
    assert replica.pid is not None
    for proc in [psutil.Process(replica.pid), psutil.Process(replica.pid).parent()]:
        assert secret not in " ".join(proc.cmdline())
    assert stat.S_IMODE((plane.home / "endpoints" / KEY_FILE).stat().st_mode) == 0o600
    attempt = plane.home / "endpoints" / "replicas" / replica.id / "1"
    assert stat.S_IMODE(attempt.stat().st_mode) == 0o700
    assert secret in (attempt / "launch.json").read_text()


def test_threads_creating_the_key_at_once_agree_on_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secrets: list[str] = []
    errors: list[BaseException] = []

    def derive() -> None:
        try:
            secrets.append(ReplicaKeys(home).secret("rep-1", 1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=derive) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(secrets) == 16 and len(set(secrets)) == 1
    assert [p.name for p in (home / "endpoints").iterdir()] == [KEY_FILE]  # no temp file left
    # Different replicas and attempts get different secrets.
    keys = ReplicaKeys(home)
    assert len({keys.secret("rep-1", 1), keys.secret("rep-1", 2), keys.secret("rep-2", 1)}) == 3
