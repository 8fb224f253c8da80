"""What a CLI command imports before it does its work (issue: 1.8 s and 220 MB per command).

``modelyard --help`` needs typer and rich only; a command that lists or describes through
a server (``MODELYARD_URL``) needs httpx, pydantic and the schemas it shows, never the data
engines, the stores, the server or the ML libraries. Each command runs in a fresh
interpreter under ``python -X importtime``, exactly as a user starts it, and the test
reads the modules it imported. Timings are for ``benchmarks/bench_cli.py``, not here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.client import wire
from modelyard.client.sdk import connect
from testkit import LiveServer

# Loaded by no remote list/describe: the data engines, the metadata store, the server
# side of the operations, the ML libraries.
HEAVY = {
    "pyarrow",
    "pandas",
    "numpy",
    "duckdb",
    "sklearn",
    "scipy",
    "sqlalchemy",
    "alembic",
    "fsspec",
    "fastapi",
    "starlette",
    "uvicorn",
    "mlflow",
    "modelyard.runtime",
    "modelyard.flavors",
}
# Nor the domains' operations and tables (the remote client reads client/_wire_index.py).
SERVER_SIDE = re.compile(r"^modelyard\.[a-z_]+\.(service|store)$")
# Nor what only other calls need: the archive writer (code snapshots, model folders), the
# run provenance capture, the progress bars, and httpx's own command line (click,
# pygments), which ``import httpx`` loads unless the CLI defers it.
NOT_FOR_READING = {
    "modelyard.compute.archive",
    "modelyard.client.provenance",
    "rich.progress",
    "click",
    "pygments",
}
# The domains whose modules (schemas, SDK wrapper) a command may load: its own. Another
# domain's schemas cost their models' definitions (and the models those import, such as
# the datasets' profile, diff and quality-report models) for nothing. Every command may
# load the artifacts' schemas (the SDK wrappers upload and download through them), the
# roles (the CLI's `users` group names them) and the dataset file model (jobs name files).
DOMAINS = {"artifacts", "data", "endpoints", "jobs", "lineage", "registry", "tracking"}
DOMAINS |= {"transform", "security"}
ANY_COMMAND = {"modelyard.security.roles", "modelyard.data.files"}


def other_domains(names: set[str], own: set[str]) -> list[str]:
    """The modules of domains other than ``own`` (and the artifacts) among ``names``."""
    return sorted(
        n
        for n in names
        if n.split(".")[0] == "modelyard"
        and len(n.split(".")) > 2
        and n.split(".")[1] in DOMAINS - own - {"artifacts"}
        and n not in ANY_COMMAND
    )


# ``--help`` calls nothing: not even the SDK or an HTTP client. (pydantic may load: typer
# itself uses it to convert command parameters.)
HELP_ONLY_ABSENT = HEAVY | {"httpx", "modelyard.client.sdk", "modelyard.client.transport"}


def imported_modules(args: list[str], env: dict[str, str]) -> tuple[set[str], str]:
    """Run ``python -X importtime -m modelyard ARGS``; the modules it imported and its stdout."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "modelyard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and not line.rstrip().endswith("| package"):
            names.add(line.rsplit("|", 1)[1].strip())
    assert "modelyard.cli.main" in names  # the parse found the import log
    return names, proc.stdout


def heavy_in(names: set[str], forbidden: set[str]) -> list[str]:
    return sorted(
        n
        for n in names
        if n in forbidden or n.split(".", 1)[0] in forbidden or SERVER_SIDE.match(n)
    )


def _env(tmp_path: Path, url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = str(tmp_path / "cli-home")
    if url is not None:
        env["MODELYARD_URL"] = url
    return env


@pytest.mark.parametrize("args", [["--help"], ["jobs", "--help"], ["runs", "list", "--help"]])
def test_help_imports_neither_the_sdk_nor_the_data_stack(tmp_path: Path, args: list[str]) -> None:
    names, out = imported_modules(args, _env(tmp_path))
    assert "Usage" in out
    assert heavy_in(names, HELP_ONLY_ABSENT) == []


def test_remote_listing_and_describing_import_no_heavy_module(
    live_server: LiveServer, tmp_path: Path
) -> None:
    assert wire._current_index(), "client/_wire_index.py is stale: python -m modelyard.client.wire"
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,a\n2,b\n")
    with connect(live_server.url) as c:  # rows to describe
        c.datasets.register("demo", data)
        run_id = c.tracking.create_run("exp", capture=False).id
        c.models.create("demo")
    env = _env(tmp_path, live_server.url)
    # Each command, and the domains whose modules it may import (see DOMAINS).
    commands: list[tuple[list[str], set[str]]] = [
        (["jobs", "list"], {"jobs"}),
        (["jobs", "list", "--help"], set()),
        (["models", "list"], {"registry"}),
        (["models", "describe", "demo"], {"registry"}),
        (["endpoints", "list"], {"endpoints"}),
        (["datasets", "list"], {"data"}),
        (["experiments", "list"], {"tracking"}),
        (["runs", "list"], {"tracking"}),
        (["transform", "list"], {"transform", "jobs"}),
        (["users", "list"], {"security"}),
        (["datasets", "show", "demo"], {"data"}),
        (["runs", "show", run_id], {"tracking"}),
        (["runs", "describe", run_id], {"tracking"}),
    ]
    found = {}
    for args, own in commands:
        names, out = imported_modules(args, env)
        found[" ".join(args)] = heavy_in(names, HEAVY | NOT_FOR_READING) + other_domains(names, own)
        assert out.strip(), args
    assert found == {cmd: [] for cmd in found}
    # The remote commands really went through the server: the seeded rows are shown.
    _, out = imported_modules(["--json", "datasets", "show", "demo"], env)
    assert '"row_count": 2' in out
