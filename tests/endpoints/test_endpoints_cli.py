"""``modelyard endpoints ...`` against a running control plane."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from epkit import ROWS, sklearn_version
from typer.testing import CliRunner

from conftest import Plane
from modelyard.cli import common as cli_common
from modelyard.cli.endpoints import _show
from modelyard.cli.main import app
from modelyard.endpoints.schemas import Endpoint

runner = CliRunner()


def test_endpoints_cli_create_invoke_update_describe_and_delete(plane: Plane) -> None:
    v = sklearn_version(plane.client, plane.folder)
    url = plane.server.url

    def run(*args: str) -> str:
        result = runner.invoke(app, ["--url", url, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    created = json.loads(
        run("--json", "endpoints", "create", "cli", "--model", "churn", "--version", str(v))
    )
    assert created["status"] == "InService"
    out = run("endpoints", "invoke", "cli", "--data", json.dumps(ROWS))
    assert '"predictions"' in out and f"model_version=churn:{v}" in out
    variants = json.dumps([{"model": "churn", "version": str(v), "weight": 2}])
    run("endpoints", "update", "cli", "--variants", variants, "--capture-percent", "100")
    listed = json.loads(run("--json", "endpoints", "list"))
    assert [e["name"] for e in listed["endpoints"]] == ["cli"]
    assert listed["endpoints"][0]["capture"]["percent"] == 100
    rollouts = json.loads(run("--json", "endpoints", "rollouts", "cli"))["rollouts"]
    assert rollouts[0]["state"] == "Completed"
    assert "cli" in run("endpoints", "describe", "cli")
    assert json.loads(run("--json", "endpoints", "capture", "cli"))["dropped"] == 0

    for bad, message in [
        (["endpoints", "describe", "ghost"], "no endpoint named 'ghost'"),
        (["endpoints", "update", "cli"], "give --model and --version"),
        (["endpoints", "update", "cli", "--variants", "{"], "not valid JSON"),
        (
            ["endpoints", "update", "cli", "--model", "churn", "--version", "1", "--alarm", "x"],
            "METRIC=THRESHOLD",
        ),
        (["endpoints", "invoke", "cli", "--data", "nonsense"], "400"),
    ]:
        result = runner.invoke(app, ["--url", url, *bad])
        assert result.exit_code == 1 and message in result.output, result.output

    run("endpoints", "delete", "cli")
    result = runner.invoke(app, ["--url", url, "endpoints", "describe", "cli"])
    assert result.exit_code == 1


def _variant(vid: str, version: int) -> dict[str, object]:
    return {
        "id": vid,
        "name": "primary",
        "model": "churn",
        "version": version,
        "model_version_id": f"mv-{version}",
        "artifact_digest": "0" * 64,
        "artifact_filename": "",
        "flavor": "sklearn",
        "weight": 1.0,
        "replicas": 1,
        "shadow": False,
    }


def test_describe_shows_latency_in_ms_and_old_and_new_variants_during_a_rollout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = dt.datetime.now(dt.UTC)
    old, new = _variant("v-old", 1), _variant("v-new", 2)
    ep = Endpoint.model_validate(
        {
            "id": "ep-1",
            "name": "churn",
            "status": "Updating",
            "message": "",
            "variants": [old, new],
            "traffic": {"v-old": 0.9, "v-new": 0.1},
            "capture": None,
            "replicas": [
                {
                    "id": f"rep-{vid}",
                    "variant_id": vid,
                    "state": "Ready",
                    "host": "127.0.0.1",
                    "port": 1234,
                    "pid": 42,
                    "restarts": 0,
                    "message": "",
                    "updated_at": now,
                }
                for vid in ("v-old", "v-new")
            ],
            "rollout": {
                "id": "ro-1",
                "endpoint": "churn",
                "strategy": {"type": "canary"},
                "state": "InProgress",
                "phase": "baking",
                "step": 0,
                "steps": [0.1, 1.0],
                "from_variants": [old],
                "to_variants": [new],
                "reason": "",
                "created_at": now,
                "updated_at": now,
                "finished_at": None,
            },
            "stats": {
                "v-old": {
                    "requests": 90,
                    "errors": 0,
                    "p50_latency_ms": 0.3,
                    "p99_latency_ms": 80.77935669463162,
                },
                "v-new": {
                    "requests": 10,
                    "errors": 0,
                    "p50_latency_ms": 0.2,
                    "p99_latency_ms": 0.4768371582031251,
                },
            },
            "created_at": now,
            "created_by": "admin",
            "updated_at": now,
            "port": None,
        }
    )
    monkeypatch.setattr(cli_common.console, "width", 250)
    _show(ep)
    out = capsys.readouterr().out
    assert "80.8 ms" in out and "0.48 ms" in out and "80.779" not in out
    rows = [line for line in out.splitlines() if "churn" in line and "│" in line]
    assert len(rows) == 2
    assert "primary (old)" in rows[0] and "90%" in rows[0]
    assert "primary (new)" in rows[1] and "10%" in rows[1]
    replica_rows = [line for line in out.splitlines() if "rep-v-" in line]
    assert ["(old)" in replica_rows[0], "(new)" in replica_rows[1]] == [True, True]
