"""``modelyard runs describe|compare``, flag help and table widths (issue 14 item 8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from modelyard.cli import common
from modelyard.cli.main import app
from modelyard.client.sdk import connect

runner = CliRunner()
LONG_EXPERIMENT = "an-experiment-with-a-name-long-enough-to-overflow-eighty-columns"


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def two_runs() -> Iterator[tuple[str, str]]:
    with connect() as c:
        a = c.tracking.create_run(LONG_EXPERIMENT, params={"lr": 0.1, "depth": 3}, capture=False)
        b = c.tracking.create_run(LONG_EXPERIMENT, params={"lr": 0.2, "depth": 3}, capture=False)
        c.tracking.log_batch(a.id, metrics=[{"key": "auc", "value": 0.91}])
        c.tracking.log_batch(b.id, metrics=[{"key": "auc", "value": 0.87}])
    yield a.id, b.id


def test_runs_describe_and_the_hidden_show_alias(two_runs: tuple[str, str]) -> None:
    a, _ = two_runs
    described = run("runs", "describe", a)
    assert a in described and "lr" in described and "0.91" in described
    assert run("runs", "show", a) == described
    listed = run("runs", "--help")
    assert "describe" in listed and "compare" in listed
    assert " show " not in listed  # the old name still works but is not advertised


def test_runs_compare_side_by_side(two_runs: tuple[str, str]) -> None:
    a, b = two_runs
    out = run("runs", "compare", a, b)
    assert a in out and b in out
    assert "* lr" in out  # differs
    assert "* depth" not in out and "depth" in out  # same in both
    assert "0.91" in out and "0.87" in out
    data = json.loads(run("--json", "runs", "compare", a, b, "--metric", "auc"))
    assert [r["id"] for r in data["runs"]] == [a, b]
    assert data["differing_params"] == ["lr"]
    assert set(data["histories"]) == {"auc"}
    missing = runner.invoke(app, ["runs", "compare", a, "run-nope"])
    assert missing.exit_code == 1 and "run-nope" in missing.output


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if hasattr(cmd, "commands"):  # a group (typer builds on its own copy of click)
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))


def test_no_flag_is_shown_as_taking_a_value() -> None:
    # Every group's and command's help, the whole tree: a flag reads `--json`, never
    # `--json <bool>` (typer's rich layout printed <bool> for every flag, --help included).
    tree = list(_commands(typer.main.get_command(app)))
    assert ("runs", "compare") in tree and len(tree) > 40
    for path in tree:
        out = run(*path, "--help")
        assert "<bool>" not in out, (path, out)
    main_help = run("--help")
    assert "--json " in main_help and "--wide " in main_help
    assert "--profile / --no-profile" in run("datasets", "register", "--help")


def test_tables_are_full_width_when_not_a_terminal(two_runs: tuple[str, str]) -> None:
    a, b = two_runs
    out = run("runs", "list")  # CliRunner's stdout is not a terminal, as a pipe or a file
    assert a in out and b in out and LONG_EXPERIMENT in out
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) > 80


def test_wide_makes_terminal_tables_full_width(
    two_runs: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two_runs
    monkeypatch.setattr(common, "console", Console(force_terminal=True, width=80))
    fitted = run("runs", "list")
    assert "…" in fitted and LONG_EXPERIMENT not in fitted
    wide = run("--wide", "runs", "list")
    assert a in wide and LONG_EXPERIMENT in wide and "…" not in wide
