"""``modelyard jobs …`` as a user runs it (Typer's runner, embedded state)."""

from __future__ import annotations

import json
from pathlib import Path

from jobkit import source
from typer.testing import CliRunner

from modelyard.cli.main import app

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_submit_follow_describe_and_stop(tmp_path: Path) -> None:
    src = source(
        tmp_path,
        """
        import os, sys
        print("epochs", os.environ["SM_HP_EPOCHS"], sys.argv[1:])
        print("loss=0.25")
        open(os.path.join(os.environ["SM_MODEL_DIR"], "m"), "w").write("m")
        """,
    )
    data = tmp_path / "rows.csv"
    data.write_text("a,b\n1,2\n")
    out = run(
        "jobs", "submit", "-e", "train.py", "--source-dir", str(src), "--hp", "epochs=2",
        "--hp", "opt=adam", "--input", f"train={data}", "--metric", "loss=loss=([0-9.]+)",
        "--wait",
    )  # fmt: skip
    assert "epochs 2 ['--epochs', '2', '--opt', 'adam']" in out and "Completed" in out
    assert "metric loss = 0.25" in out and "model:" in out
    jobs = json.loads(run("--json", "jobs", "list"))
    assert jobs["total"] == 1
    job_id = jobs["jobs"][0]["id"]
    described = json.loads(run("--json", "jobs", "describe", job_id))
    assert described["state"] == "Completed"
    assert described["spec"]["inputs"][0]["files"][0]["path"] == "rows.csv"
    assert run("jobs", "logs", job_id).splitlines()[1] == "loss=0.25"
    assert run("jobs", "logs", "-f", job_id).splitlines()[0].startswith("epochs 2")
    metrics = json.loads(run("--json", "jobs", "metrics", job_id))
    assert metrics["latest"] == {"loss": 0.25}
    refused = runner.invoke(app, ["jobs", "stop", job_id])
    assert refused.exit_code == 1 and "already ended Completed" in refused.output
    bad = runner.invoke(app, ["jobs", "submit", "--algorithm", "no_such_thing"])
    assert bad.exit_code == 1 and "is not installed" in bad.output
    bad = runner.invoke(app, ["jobs", "submit", "-e", "train.py", "--hp", "novalue"])
    assert bad.exit_code == 1 and "NAME=VALUE" in bad.output
