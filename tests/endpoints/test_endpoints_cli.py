"""``modelyard endpoints ...`` against a running control plane."""

from __future__ import annotations

import json

from epkit import ROWS, sklearn_version
from typer.testing import CliRunner

from conftest import Plane
from modelyard.cli.main import app

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
