"""What a run records beyond params and metrics: notes, inputs, code, git commit,
environment, and the lineage edges they write."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from modelyard.client.sdk import Client
from modelyard.errors import InvalidInput, NotFound


def _dataset(client: Client, name: str = "customers") -> int:
    table = pa.table({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    return client.datasets.register(name, table).version


def test_a_run_records_notes_inputs_code_commit_and_environment(
    client: Client, tmp_path: Path
) -> None:
    version = _dataset(client)
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('hello')\n")
    subprocess.run(["git", "init", "-q", str(code)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(code),
            "-c",
            "user.email=a@b",
            "-c",
            "user.name=a",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    head = subprocess.run(
        ["git", "-C", str(code), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()

    with client.tracking.start_run(
        "details",
        name="r1",
        notes="first *try*",
        inputs=[("customers", None, "train")],
        code=code,
    ) as run:
        run.log_metric("loss", 0.5)
    got = client.tracking.get_run(run.id)
    assert got.notes == "first *try*"
    assert [(i.dataset, i.version, i.context) for i in got.inputs] == [
        ("customers", version, "train")
    ]
    assert got.git_commit == head
    assert got.environment["python"].count(".") == 2
    assert "pydantic" in got.environment  # imported by this process
    assert got.code_digest is not None
    assert client.artifacts.stat(got.code_digest).size > 0

    graph = client.lineage("run", run.id, direction="upstream")
    relations = {(e.source.split(":")[0], e.relation) for e in graph.edges}
    assert relations == {("dataset_version", "input"), ("artifact", "code")}
    assert f"dataset_version:{got.inputs[0].version_id}" in {
        n.type + ":" + n.id for n in graph.nodes
    }

    updated = client.tracking.update_run(run.id, notes="revised")
    assert updated.notes == "revised" and updated.name == "r1"


def test_bad_inputs_are_refused_and_create_nothing(client: Client, tmp_path: Path) -> None:
    _dataset(client)
    with pytest.raises(NotFound):
        client.tracking.create_run("details", inputs=["no-such-dataset"])
    with pytest.raises(NotFound):
        client.tracking.create_run("details", inputs=[("customers", 9)])
    with pytest.raises(InvalidInput):
        client.tracking.create_run("details", inputs=[("customers", 0)])
    with pytest.raises(InvalidInput):
        client.tracking.create_run("details", code=tmp_path / "missing")
    with pytest.raises(NotFound):
        client.tracking.get_experiment("details")  # not even the experiment was created


def test_nul_characters_are_refused_before_the_database(client: Client) -> None:
    """PostgreSQL cannot store NUL in text: refuse it as bad input, on every store."""
    with pytest.raises(InvalidInput):
        client.tracking.create_run("nul", tags={"t": "a\x00b"})
    with pytest.raises(InvalidInput):
        client.tracking.create_run("nul", params={"p": "\x00"})
    with pytest.raises(InvalidInput):
        client.tracking.create_run("nul", notes="x\x00")
    run = client.tracking.create_run("nul")
    with pytest.raises(InvalidInput):
        client.tracking.log_batch(run.id, tags={"t": "\x00"})
    with pytest.raises(InvalidInput):
        client.tracking.update_run(run.id, notes="\x00")
    assert client.tracking.get_run(run.id).tags == {}
