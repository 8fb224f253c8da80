"""``modelyard models …`` as a user runs it (embedded, state under MODELYARD_HOME)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelyard.cli.main import app

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code != 0, result.output
    return " ".join(result.output.split())  # rich wraps long lines


def test_models_commands(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.json").write_text("{}")
    single = tmp_path / "model.onnx"
    single.write_bytes(b"onnx")
    signature = tmp_path / "signature.json"
    signature.write_text(json.dumps({"inputs": [{"name": "x", "type": "float32"}]}))

    out = run(
        "models", "register", "churn", str(folder), "--flavor", "sklearn",
        "-m", "auc=0.91", "--tag", "team=risk", "--intended-use", "churn scoring",
        "--signature", f"@{signature}",
    )  # fmt: skip
    assert "churn v1" in out and "PendingManualApproval" in out and "churn scoring" in out
    v2 = json.loads(run("--json", "models", "register", "churn", str(single), "--flavor", "onnx"))
    assert (v2["version"], v2["artifact_filename"]) == (2, "model.onnx")
    v3 = json.loads(
        run("--json", "models", "register", "churn", v2["artifact_digest"], "--flavor", "onnx")
    )
    assert v3["version"] == 3 and v3["artifact_digest"] == v2["artifact_digest"]

    approved = json.loads(run("--json", "models", "approve", "churn", "1", "--reason", "good"))
    assert (approved["status"], approved["status_reason"]) == ("Approved", "good")
    assert "churn: production -> v1" in run("models", "alias", "churn", "production", "1")
    run("models", "alias", "churn", "staging", "2")
    assert "(was v2)" in run("models", "alias", "churn", "staging", "3")
    assert "removed" in run("models", "alias", "churn", "staging", "--delete")
    rejected = json.loads(run("--json", "models", "reject", "churn", "2", "--reason", "worse"))
    assert rejected["status"] == "Rejected"

    described = json.loads(run("--json", "models", "describe", "churn", "production"))
    assert described["version"] == 1 and described["metrics"] == {"auc": 0.91}
    assert described["signature"]["inputs"][0]["name"] == "x"
    assert described["tags"] == {"team": "risk"}
    group = json.loads(run("--json", "models", "describe", "churn"))
    assert (group["latest_version"], group["aliases"]) == (3, {"production": 1})
    listed = json.loads(run("--json", "models", "list"))
    assert [m["name"] for m in listed["models"]] == ["churn"]
    versions = json.loads(run("--json", "models", "versions", "churn", "--status", "Rejected"))
    assert [v["version"] for v in versions["versions"]] == [2]
    history = json.loads(run("--json", "models", "history", "churn"))["entries"]
    assert [(e["kind"], e["alias"], e["new"]) for e in history] == [
        ("registered", None, "PendingManualApproval"),
        ("registered", None, "PendingManualApproval"),
        ("registered", None, "PendingManualApproval"),
        ("status", None, "Approved"),
        ("alias", "production", "1"),
        ("alias", "staging", "2"),
        ("alias", "staging", "3"),
        ("alias", "staging", None),
        ("status", None, "Rejected"),
    ]
    # Tables render too.
    for args in (["versions", "churn"], ["history", "churn"], ["list"], ["describe", "churn"]):
        assert "churn" in run("models", *args)

    # Failures: a clear message, exit status 1, nothing changed.
    assert "approve it first" in fails("models", "alias", "churn", "production", "3")
    assert "reason" in fails("models", "reject", "churn", "3")
    assert "neither an existing file" in fails(
        "models", "register", "churn", "nope", "--flavor", "onnx"
    )
    assert "must be a number" in fails(
        "models", "register", "churn", str(single), "--flavor", "onnx", "-m", "auc=high"
    )
    assert "not valid JSON" in fails(
        "models", "register", "churn", str(single), "--flavor", "onnx", "--card", "{"
    )
    assert "not both" in fails("models", "alias", "churn", "staging", "1", "--delete")
    assert "is not one of" in fails("models", "versions", "churn", "--status", "Done")
    assert "does not exist" in fails("models", "describe", "nope")
    assert json.loads(run("--json", "models", "describe", "churn"))["latest_version"] == 3
    assert len(json.loads(run("--json", "models", "history", "churn"))["entries"]) == 9
