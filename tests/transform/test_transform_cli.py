"""``modelyard transform …`` as a user runs it (embedded, state under MODELYARD_HOME)."""

from __future__ import annotations

import json
from pathlib import Path

from transformkit import FEATURES, register_model, table
from typer.testing import CliRunner

import modelyard as my
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


def test_transform_commands(tmp_path: Path) -> None:
    with my.connect() as client:  # the CLI's own home (MODELYARD_HOME)
        register_model(client, tmp_path)
        client.datasets.register("customers", table(20), profile=False)

    assert "must be none or input" in fails(
        "transform", "run", "-m", "churn", "-d", "customers", "--join-source", "both"
    )
    assert "'nope' does not exist" in fails("transform", "run", "-m", "nope", "-d", "customers")
    assert "names no column" in fails(
        "transform", "run", "-m", "churn", "-d", "customers", "--input-filter", ","
    )

    out = run(
        "--json", "transform", "run", "-m", "churn", "--version", "1", "-d", "customers",
        "--join-source", "input", "--input-filter", ",".join(FEATURES),
        "--output-filter", "id,prediction", "-o", "scored", "--batch-size", "7",
    )  # fmt: skip
    result = json.loads(out[out.index("{") :])
    assert result["state"] == "Completed" and result["output_dataset"] == "scored"
    assert (result["rows_in"], result["rows_out"], result["output_version"]) == (20, 20, 1)
    assert "transform: done · 20 rows in, 20 rows out, 0 errors" in out  # progress lines

    shown = run("transform", "describe", result["job_id"])
    assert "rows: 20 in, 20 out, 0 failed" in shown and "output: dataset scored v1" in shown
    listed = json.loads(run("--json", "transform", "list"))
    assert [t["job_id"] for t in listed["transforms"]] == [result["job_id"]]
    assert (
        json.loads(run("--json", "transform", "finalize", result["job_id"]))["output_version"] == 1
    )
