"""Run output artifacts: upload, one-level listing, verified download, lineage, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client.sdk import Client, connect
from modelyard.client.transport import EmbeddedTransport
from modelyard.compute.archive import extract_tar_gz, list_tar_gz
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.lineage.schemas import GetLineage
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_log_list_download_round_trip(client: Client, tmp_path: Path) -> None:
    run = client.tracking.create_run("arts", name="r1")
    src = tmp_path / "src"
    _write(src / "MLmodel", b"flavors: {}\n")
    _write(src / "data" / "model.bin", b"\x00\x01" * 1000)
    _write(tmp_path / "notes.txt", b"hello")
    logged = client.tracking.log_artifacts(run.id, src, "model")
    assert sorted(a.path for a in logged) == ["model/MLmodel", "model/data/model.bin"]
    one = client.tracking.log_artifact(run.id, tmp_path / "notes.txt")
    assert one.path == "notes.txt" and one.size == 5
    assert one.digest == hashlib.sha256(b"hello").hexdigest()

    root = client.tracking.list_artifacts(run.id)
    assert [(a.path, a.is_dir, a.size) for a in root.artifacts] == [
        ("model", True, None),
        ("notes.txt", False, 5),
    ]
    inside = client.tracking.list_artifacts(run.id, "model")
    assert [(a.path, a.is_dir) for a in inside.artifacts] == [
        ("model/MLmodel", False),
        ("model/data", True),
    ]
    assert client.tracking.list_artifacts(run.id, "notes.txt").artifacts == []
    assert client.tracking.list_artifacts(run.id, "nothing/here").artifacts == []

    out = client.tracking.download_artifacts(run.id, "model", tmp_path / "out")
    assert out == tmp_path / "out" / "model"
    assert (out / "data" / "model.bin").read_bytes() == b"\x00\x01" * 1000
    assert (out / "MLmodel").read_bytes() == b"flavors: {}\n"
    single = client.tracking.download_artifacts(run.id, "notes.txt", tmp_path / "one")
    assert single.read_bytes() == b"hello"

    # Replacing a file keeps one row and points at the new content.
    _write(tmp_path / "v2" / "notes.txt", b"hello again")
    client.tracking.log_artifact(run.id, tmp_path / "v2" / "notes.txt")
    again = client.tracking.download_artifacts(run.id, "notes.txt", tmp_path / "two")
    assert again.read_bytes() == b"hello again"
    assert [a.path for a in client.tracking.list_artifacts(run.id).artifacts] == [
        "model",
        "notes.txt",
    ]


def test_bad_paths_missing_runs_and_ended_runs_change_nothing(
    client: Client, tmp_path: Path
) -> None:
    run = client.tracking.create_run("arts")
    f = _write(tmp_path / "f.txt", b"x")
    for bad in ("../escape", "a/../../b", "/abs"):
        with pytest.raises(InvalidInput):
            client.tracking.log_artifact(run.id, f, bad)
    with pytest.raises(NotFound):
        client.tracking.log_artifact("run-missing", f)
    with pytest.raises(NotFound):
        client.tracking.list_artifacts("run-missing")
    with pytest.raises(NotFound):
        client.tracking.download_artifacts(run.id, "f.txt", tmp_path / "out")
    # A path cannot be a file and a folder at once.
    client.tracking.log_artifact(run.id, f, "dir")
    with pytest.raises(Conflict):
        client.tracking.log_artifact(run.id, _write(tmp_path / "dir", b"y"))
    with pytest.raises(Conflict):
        client.tracking.log_artifact(run.id, f, "dir/f.txt")
    client.tracking.end_run(run.id)
    with pytest.raises(Conflict):
        client.tracking.log_artifact(run.id, f, "late")
    assert [a.path for a in client.tracking.list_artifacts(run.id).artifacts] == ["dir"]


def test_lineage_edge_and_cli(tmp_path: Path) -> None:
    with connect(home=tmp_path / "home") as c:
        run = c.tracking.create_run("arts")
        logged = c.tracking.log_artifact(run.id, _write(tmp_path / "w.bin", b"weights"), "m")
        graph = c.transport.call("lineage.get_lineage", GetLineage(node_type="run", node_id=run.id))
    assert [(e.source, e.target, e.relation, e.attrs) for e in graph.edges] == [
        (f"run:{run.id}", f"artifact:{logged.digest}", "output", {"path": "m/w.bin"})
    ]
    result = CliRunner().invoke(app, ["--json", "runs", "artifacts", run.id, "--path", "m"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert listed["artifacts"][0]["path"] == "m/w.bin" and listed["artifacts"][0]["size"] == 7


def test_archive_a_folder_of_a_run(client: Client, tmp_path: Path) -> None:
    run = client.tracking.create_run("arts")
    _write(tmp_path / "m" / "MLmodel", b"flavors: {}\n")
    _write(tmp_path / "m" / "sub" / "w.bin", b"w" * 100)
    client.tracking.log_artifacts(run.id, tmp_path / "m", "model")
    client.tracking.log_artifact(run.id, _write(tmp_path / "other.txt", b"o"))

    def archive(path: str) -> Any:
        return client.tracking.archive_artifacts(run.id, path)

    packed = archive("model")
    assert packed.files == 2 and packed.path == "model"
    assert archive("model/").digest == packed.digest  # deterministic
    dest = tmp_path / "unpacked"
    client.artifacts.download(packed.digest, tmp_path / "a.tar.gz")
    list_tar_gz(tmp_path / "a.tar.gz")
    extract_tar_gz(tmp_path / "a.tar.gz", dest)
    assert (dest / "sub" / "w.bin").read_bytes() == b"w" * 100
    assert (dest / "MLmodel").exists() and not (dest / "other.txt").exists()
    with pytest.raises(NotFound):
        archive("other.txt")  # a file, not a folder
    with pytest.raises(NotFound):
        client.tracking.archive_artifacts("run-missing", "m")
    with pytest.raises(InvalidInput):
        archive("../model")


def test_artifact_rows_on_both_metadata_stores(runtime: Runtime, tmp_path: Path) -> None:
    """The LIKE prefix queries and the lineage edge, on SQLite and PostgreSQL."""
    c = Client(EmbeddedTransport(runtime, local_principal()))
    run = c.tracking.create_run("arts")
    _write(tmp_path / "d" / "100%_done" / "a.txt", b"a")
    _write(tmp_path / "d" / "100x_done" / "b.txt", b"b")
    c.tracking.log_artifacts(run.id, tmp_path / "d")
    # '%' and '_' in a folder name match literally, not as wildcards.
    listed = c.tracking.list_artifacts(run.id, "100%_done").artifacts
    assert [a.path for a in listed] == ["100%_done/a.txt"]
    c.tracking.log_artifact(run.id, _write(tmp_path / "v2" / "a.txt", b"a2"), "100%_done")
    out = c.tracking.download_artifacts(run.id, "100%_done", tmp_path / "out")
    assert (out / "a.txt").read_bytes() == b"a2"
    graph = c.transport.call("lineage.get_lineage", GetLineage(node_type="run", node_id=run.id))
    assert len([e for e in graph.edges if e.relation == "output"]) == 3
