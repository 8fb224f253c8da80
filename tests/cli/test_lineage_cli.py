"""``modelyard lineage``: the graph around a node, as JSON and as a table."""

from __future__ import annotations

import json

import pyarrow as pa
from typer.testing import CliRunner

import modelyard as my
from modelyard.cli.main import app

runner = CliRunner()


def test_lineage_command_shows_upstream_edges() -> None:
    with my.connect() as c:
        c.datasets.register("customers", pa.table({"x": [1.0, 2.0]}))
        run = c.tracking.create_run("e", inputs=["customers"])
    result = runner.invoke(app, ["--json", "lineage", f"run:{run.id}", "--upstream"])
    assert result.exit_code == 0, result.output
    graph = json.loads(result.output)
    assert graph["root"] == f"run:{run.id}"
    assert [(e["relation"], e["target"]) for e in graph["edges"]] == [("input", f"run:{run.id}")]
    table = runner.invoke(app, ["lineage", f"run:{run.id}"])
    assert table.exit_code == 0 and "customers v1" in table.output and "input" in table.output
    empty = runner.invoke(app, ["--json", "lineage", f"run:{run.id}", "--downstream"])
    assert json.loads(empty.output)["edges"] == []


def test_lineage_command_rejects_bad_nodes() -> None:
    bad = runner.invoke(app, ["lineage", "no-colon"])
    assert bad.exit_code == 1 and "<type>:<id>" in bad.output
    bad = runner.invoke(app, ["lineage", "planet:earth"])
    assert bad.exit_code == 1 and "node_type" in bad.output
    bad = runner.invoke(app, ["lineage", "run:x", "--upstream", "--downstream"])
    assert bad.exit_code == 1 and "choose" in bad.output
