"""The command line, run as a user would run it (Typer's runner and real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from modelyard.cli.main import app
from testkit import free_port

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_users_tokens_and_audit(tmp_path: Path) -> None:
    run("users", "create", "ada", "--role", "engineer")
    token = run("tokens", "create", "--user", "ada").strip()
    assert token.startswith("myt_")
    users = json.loads(run("--json", "users", "list"))["users"]
    assert [(u["name"], u["role"]) for u in users] == [("ada", "engineer")]
    events = json.loads(run("--json", "audit", "list"))["events"]
    assert [e["operation"] for e in events] == ["security.create_token", "security.create_user"]
    bad = runner.invoke(app, ["users", "create", "ada"])
    assert bad.exit_code == 1 and "already exists" in bad.output
    bad = runner.invoke(app, ["users", "create", "zed", "--role", "superuser"])
    assert bad.exit_code == 1 and "role" in bad.output


def test_datasets_commands(tmp_path: Path) -> None:
    data = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0, None], "c": ["a", "b", "a", "a"]}), data)
    out = run("datasets", "register", "demo", str(data))
    assert "demo" in out and "v1" in out
    run("datasets", "register", "demo", str(data), "--no-profile")
    listed = json.loads(run("--json", "datasets", "list"))
    assert listed["datasets"][0]["latest_version"] == 2
    shown = json.loads(run("--json", "datasets", "show", "demo", "--version", "1"))
    assert shown["row_count"] == 4 and shown["profile"]["columns"][0]["missing"] == 1
    profile = json.loads(run("--json", "datasets", "profile", "demo"))
    assert profile["row_count"] == 4
    diff = json.loads(run("--json", "datasets", "diff", "demo", "1", "2"))
    assert diff["schema_changes"]["added"] == []
    rules = json.dumps([{"type": "completeness", "column": "x"}])
    report = json.loads(run("--json", "datasets", "check", "demo", "--rules", rules))
    assert report["passed"] is False
    gated = runner.invoke(app, ["datasets", "check", "demo", "--rules", rules, "--gate"])
    assert gated.exit_code == 2
    missing = runner.invoke(app, ["datasets", "show", "nope"])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def _modelyard(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelyard.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_up_refuses_a_public_bind_without_auth(tmp_path: Path) -> None:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    proc = _modelyard("up", "--host", "0.0.0.0", "--port", str(free_port()), env=env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0" in out
    # --auth alone is not enough while no user exists to hold a token.
    proc = _modelyard("up", "--host", "0.0.0.0", "--auth", "--port", str(free_port()), env=env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2


def test_up_serves_and_shuts_down_gracefully(tmp_path: Path) -> None:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    port = free_port()
    proc = _modelyard("up", "--port", str(port), env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.2)
        remote = subprocess.run(
            [sys.executable, "-m", "modelyard.cli", "--json", "datasets", "list"],
            env={**env, "MODELYARD_URL": f"http://127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert remote.returncode == 0, remote.stderr
        assert json.loads(remote.stdout)["total"] == 0
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    # uvicorn finishes in-flight work, runs shutdown, then re-raises SIGTERM for the exit status.
    assert proc.returncode in (0, -15), out
    assert "Application shutdown complete" in out and "Finished server process" in out


def test_db_upgrade_and_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    out = run("db", "upgrade", "--db", url)
    assert out.startswith("schema empty -> ")
    head = out.split("-> ")[1].strip()
    assert run("db", "current", "--db", url).split() == ["current:", head, "head:", head]
    assert run("db", "upgrade", "--db", url).strip() == f"schema {head} -> {head}"
    bad = runner.invoke(app, ["db", "upgrade", "--db", "mysql://x/y"])
    assert bad.exit_code == 1 and "not supported" in bad.output
