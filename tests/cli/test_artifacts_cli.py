"""``modelyard artifacts``: upload, download, ls and verify, embedded and through a server."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import modelyard as my
from modelyard.cli.main import app
from modelyard.runtime import Runtime
from testkit import LiveServer, make_settings

runner = CliRunner()


@pytest.fixture(params=["embedded", "remote"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    """The arguments that choose the transport, and the artifact folder behind it."""
    store = tmp_path / "home" / "artifacts"
    if request.param == "embedded":
        yield [], store
        return
    runtime = Runtime(make_settings(tmp_path))
    with LiveServer(runtime) as live:
        yield ["--url", live.url], store
    runtime.close()


def invoke(prefix: list[str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*prefix, *args])
    return result.exit_code, result.output


def damage(store: Path, digest: str) -> None:
    path = store / "objects" / "sha256" / digest[:2] / digest[2:4] / digest
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_upload_ls_download_round_trip(cli: tuple[list[str], Path], tmp_path: Path) -> None:
    prefix, _ = cli
    files = []
    for i in range(3):
        f = tmp_path / f"f{i}.bin"
        f.write_bytes(b"content %d" % i * 1000)
        files.append(f)
    digests = []
    for f in files:
        code, out = invoke(prefix, "--json", "artifacts", "upload", str(f))
        assert code == 0, out
        ref = json.loads(out)
        assert ref == {"digest": hashlib.sha256(f.read_bytes()).hexdigest(), "size": 9000}
        digests.append(ref["digest"])
    code, out = invoke(prefix, "--json", "artifacts", "ls")
    assert code == 0, out
    listing = json.loads(out)
    assert [a["digest"] for a in listing["artifacts"]] == sorted(digests)
    assert listing["next_after"] is None
    code, out = invoke(prefix, "--json", "artifacts", "ls", "--limit", "2")
    page = json.loads(out)
    assert len(page["artifacts"]) == 2 and page["next_after"] == sorted(digests)[1]
    code, out = invoke(prefix, "--json", "artifacts", "ls", "--after", page["next_after"])
    assert [a["digest"] for a in json.loads(out)["artifacts"]] == sorted(digests)[2:]
    code, out = invoke(prefix, "artifacts", "ls")
    assert code == 0 and "3 objects" in out and "8.8 KiB" in out

    dest = tmp_path / "out" / "copy.bin"
    code, out = invoke(prefix, "artifacts", "download", digests[0], str(dest))
    assert code == 0, out
    assert dest.read_bytes() == files[0].read_bytes()


def test_download_and_ls_of_run_artifacts(cli: tuple[list[str], Path], tmp_path: Path) -> None:
    prefix, _ = cli
    url = prefix[1] if prefix else None
    source = tmp_path / "report.txt"
    source.write_text("auc 0.9")
    with my.connect(url) as c:
        run = c.tracking.create_run("cli")
        c.tracking.log_artifact(run.id, source, "eval")
    code, out = invoke(prefix, "--json", "artifacts", "ls", f"runs:/{run.id}")
    assert code == 0, out
    assert [(a["path"], a["is_dir"]) for a in json.loads(out)["artifacts"]] == [("eval", True)]
    code, out = invoke(prefix, "artifacts", "ls", f"runs:/{run.id}/eval")
    assert code == 0 and "eval/report.txt" in out
    code, out = invoke(prefix, "artifacts", "download", f"runs:/{run.id}/eval", str(tmp_path / "d"))
    assert code == 0, out
    assert (tmp_path / "d" / "eval" / "report.txt").read_text() == "auc 0.9"


def test_download_of_a_model_version(tmp_path: Path) -> None:
    with my.connect() as c:
        digest = c.artifacts.upload(b"model bytes").digest
        c.models.register("churn", artifact=digest, filename="model.onnx", flavor="onnx")
    code, out = invoke([], "artifacts", "download", "models:/churn/1", str(tmp_path / "m"))
    assert code == 0, out
    assert (tmp_path / "m" / "model.onnx").read_bytes() == b"model bytes"
    code, out = invoke([], "artifacts", "download", "models:/churn/9", str(tmp_path / "n"))
    assert code == 1 and "not_found" in out


@pytest.mark.parametrize(
    "source", ["not-a-digest", "A" * 64, "runs:/run-x", "models:/only-name", "s3://b/k"]
)
def test_download_refuses_what_it_cannot_name(tmp_path: Path, source: str) -> None:
    code, out = invoke([], "artifacts", "download", source, str(tmp_path / "x"))
    assert code == 1
    assert repr(source) in out and "runs:/<run id>/<path>" in out
    assert not (tmp_path / "x").exists()


def test_ls_refuses_an_unknown_target() -> None:
    code, out = invoke([], "artifacts", "ls", "models:/m/1")
    assert code == 1 and "runs:/<run id>" in out


def test_verify_reports_damage_and_a_reupload_repairs_it(
    cli: tuple[list[str], Path], tmp_path: Path
) -> None:
    prefix, store = cli
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(b"good" * 1000)
    bad.write_bytes(b"bad!" * 1000)
    refs = {}
    for f in (good, bad):
        code, out = invoke(prefix, "--json", "artifacts", "upload", str(f))
        refs[f.name] = json.loads(out)["digest"]
    code, out = invoke(prefix, "artifacts", "verify")
    assert code == 0, out
    assert "checked 2 objects" in out and "0 damaged" in out

    damage(store, refs["bad.bin"])
    code, out = invoke(prefix, "--json", "artifacts", "verify")
    assert code == 1
    report = json.loads(out)
    assert report["checked"] == 2
    assert [d["digest"] for d in report["damaged"]] == [refs["bad.bin"]]
    code, out = invoke(prefix, "artifacts", "download", refs["bad.bin"], str(tmp_path / "o"))
    assert code == 1 and "artifact_corrupted" in out and refs["bad.bin"] in out
    assert not (tmp_path / "o").exists()

    code, out = invoke(prefix, "artifacts", "upload", str(bad))  # the original bytes
    assert code == 0 and refs["bad.bin"] in out
    code, out = invoke(prefix, "artifacts", "verify", refs["bad.bin"], refs["good.bin"])
    assert code == 0 and "checked 2 objects" in out
    code, out = invoke(prefix, "artifacts", "verify", "0" * 64)
    assert code == 1 and "1 missing" in out
