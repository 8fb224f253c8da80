"""The ``modelyard`` command builds only the group a command line runs (cli/main.py).

Building the group alone must not change what the command does: the same output, the
same errors and help, and the whole tree whenever the line could need it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app, group_named

GROUPS = {"runs", "jobs", "models", "users", "db"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["runs", "list"], "runs"),
        (["--json", "runs", "list", "-e", "x"], "runs"),
        (["--url", "http://h:1", "--token", "t", "--home", "/h", "jobs", "list"], "jobs"),
        (["--url=http://h:1", "--wide", "models", "describe", "m"], "models"),
        # A value that spells a group is a value, not the group.
        (["--home", "runs", "jobs", "list"], "jobs"),
        # Lines that may need every group: no group, an unknown one, a top-level command,
        # the top level's help or another top-level option.
        ([], None),
        (["--help"], None),
        (["--help", "runs"], None),
        (["--install-completion"], None),
        (["nosuch", "list"], None),
        (["up", "--port", "1"], None),
        (["--json"], None),
        (["--url"], None),
    ],
)
def test_the_group_a_command_line_names(argv: list[str], expected: str | None) -> None:
    assert group_named(argv, GROUPS) == expected


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = str(tmp_path / "home")
    env["COLUMNS"] = "100"
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "--help"],
        ["runs", "list", "--help"],
        ["runs", "lst"],  # an unknown command of the group: its suggestion
        ["--json", "jobs", "describe"],  # a missing argument
        ["models", "list", "--limit", "x"],  # a bad value
    ],
)
def test_a_group_built_alone_answers_as_the_whole_tree_does(
    args: list[str], tmp_path: Path
) -> None:
    alone = _run(args, tmp_path)
    whole = CliRunner().invoke(app, args, prog_name="modelyard", env={"COLUMNS": "100"})
    assert alone.returncode == whole.exit_code, alone.stderr
    assert alone.stdout + alone.stderr == whole.output


def test_the_top_level_help_lists_every_group(tmp_path: Path) -> None:
    out = _run(["--help"], tmp_path).stdout
    for name in ("users", "datasets", "jobs", "experiments", "runs", "models", "endpoints"):
        assert f"  {name} " in out
    # With a group named after the help option, the help is still the top level's.
    assert _run(["--help", "runs"], tmp_path).stdout == out
    assert app.registered_groups and len(app.registered_groups) > 10  # left as it was
