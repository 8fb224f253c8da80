"""The team setup: `modelyard up --db postgresql://… --artifacts s3://…` with auth on,
used by a remote SDK client, against the real PostgreSQL and a real SeaweedFS S3 server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pyarrow as pa
import pytest
import s3fs

import modelyard as my
from testkit import free_port


def _cli(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.postgres
@pytest.mark.s3
def test_postgres_s3_server_with_auth(pg_url: str, s3_store_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MODELYARD_HOME": str(tmp_path / "home"),
        "MODELYARD_DB": pg_url,
        "MODELYARD_ARTIFACTS": s3_store_url,
    }
    _cli("users", "create", "admin", "--role", "admin", env=env)
    token = _cli("tokens", "create", "--user", "admin", env=env).strip()
    port = free_port()
    up = ["up", "--host", "0.0.0.0", "--auth", "--port", str(port), "--allowed-host", "127.0.0.1"]
    server = subprocess.Popen(
        [sys.executable, "-m", "modelyard.cli", *up],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        with pytest.raises(my.Unauthenticated):
            my.connect(url).datasets.list()
        client = my.connect(url, token=token)
        table = pa.table({"x": [float(i) for i in range(1000)], "k": ["a", "b"] * 500})
        v = client.datasets.register("remote", table)
        assert v.profile is not None and v.profile.row_count == 1000
        report = client.datasets.check("remote", [{"type": "range", "column": "x", "min": 0}])
        assert report.passed
        assert client.datasets.to_arrow("remote").equals(table)
        client.close()
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    # The metadata went to PostgreSQL and the content to S3.
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT name, latest_version FROM datasets").fetchall()
        assert rows == [("remote", 1)]
        ops = [r[0] for r in conn.execute("SELECT operation FROM audit_events WHERE actor='admin'")]
        assert "datasets.register_version" in ops
    fs = s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": env["MODELYARD_S3_ENDPOINT_URL"]},
    )
    digest = v.files[0].digest
    key = f"/objects/sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    assert fs.exists(s3_store_url.removeprefix("s3://") + key)
    assert "Application shutdown complete" in out
