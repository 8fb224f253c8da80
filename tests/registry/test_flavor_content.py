"""The registry takes a version's flavor from its content and refuses a label that lies.

Issue 13 item 5: a folder with ``code/inference.py`` (or a ``python``-flavor folder)
registered as ``flavor: "sklearn"`` ran its Python code when a replica loaded it, while
the registry, the endpoint and the approval screen said ``sklearn``.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest

from modelyard.cli.main import app
from modelyard.client.sdk import Client
from modelyard.compute.archive import write_tar_gz
from modelyard.errors import InvalidInput, NotFound
from modelyard.flavors import save_model
from modelyard.flavors._content import content_flavor
from testkit import LiveServer

HANDLER = """\
import json


def model_fn(model_dir):
    return {"bias": 1.0}


def predict_fn(data, model):
    return [sum(row) + model["bias"] for row in data]
"""


def _sagemaker_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "sm"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(HANDLER)
    (folder / "model.joblib").write_bytes(b"weights")
    return folder


def _python_flavor_folder(tmp_path: Path) -> Path:
    handler = tmp_path / "handler.py"
    handler.write_text(HANDLER)
    save_model(handler, tmp_path / "py", flavor="python")
    return tmp_path / "py"


def test_a_sagemaker_handler_folder_is_python_and_not_sklearn(
    client: Client, tmp_path: Path
) -> None:
    folder = _sagemaker_folder(tmp_path)
    with pytest.raises(InvalidInput) as info:
        client.models.register("m", path=folder, flavor="sklearn")
    message = info.value.message
    assert "'sklearn'" in message and "'python'" in message and "code/inference.py" in message
    with pytest.raises(NotFound):
        client.models.get("m")  # nothing was registered
    version = client.models.register("m", path=folder)
    assert (version.flavor, version.runs_user_code) == ("python", True)
    assert client.models.version("m", 1).runs_user_code is True


def test_a_python_flavor_folder_is_refused_as_sklearn(client: Client, tmp_path: Path) -> None:
    folder = _python_flavor_folder(tmp_path)
    with pytest.raises(InvalidInput, match=r"flavor 'sklearn' does not match.*'python'"):
        client.models.register("m", path=folder, flavor="sklearn")
    version = client.models.register("m", path=folder, flavor="python")
    assert version.runs_user_code is True


def test_content_that_names_no_flavor_keeps_the_declared_one(client: Client) -> None:
    digest = client.artifacts.upload(b"opaque weights").digest
    version = client.models.register("m", artifact=digest, flavor="onnx")
    assert (version.flavor, version.runs_user_code) == ("onnx", False)
    assert client.models.register("m", artifact=digest, flavor="pickle").runs_user_code


def test_a_tar_made_with_tar_c_dot_is_read_too(tmp_path: Path) -> None:
    """``tar -czf model.tar.gz -C dir .`` names every member ``./...``, as SageMaker's
    model.tar.gz often does."""
    folder = _sagemaker_folder(tmp_path)
    archive = tmp_path / "model.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(folder), "."], check=True)
    assert content_flavor(archive).flavor == "python"
    plain = tmp_path / "plain.tar.gz"
    write_tar_gz(folder, plain)
    assert content_flavor(plain).flavor == "python"


def test_rest_refuses_the_mislabelled_version_with_a_400(
    live_server: LiveServer, tmp_path: Path
) -> None:
    folder = _sagemaker_folder(tmp_path)
    archive = tmp_path / "model.tar.gz"
    write_tar_gz(folder, archive)
    with httpx.Client(base_url=live_server.url + "/api/v1") as http:
        digest = http.put("/artifacts", content=archive.read_bytes()).json()["digest"]
        body = {"name": "m", "artifact_digest": digest, "flavor": "sklearn"}
        refused = http.post("/models/m/versions", json=body)
        assert refused.status_code == 400
        assert "'sklearn'" in refused.text and "'python'" in refused.text
        created = http.post("/models/m/versions", json={"name": "m", "artifact_digest": digest})
        assert created.status_code == 200, created.text
        shown = http.get("/models/m/versions/1").json()
        assert (shown["flavor"], shown["runs_user_code"]) == ("python", True)


def test_models_describe_says_it_runs_user_code(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    folder = _sagemaker_folder(tmp_path)
    runner = CliRunner()
    registered = runner.invoke(app, ["models", "register", "m", str(folder)])
    assert registered.exit_code == 0, registered.output
    shown = runner.invoke(app, ["models", "describe", "m", "1"])
    assert shown.exit_code == 0, shown.output
    assert "runs user code" in shown.output and "python" in shown.output


def test_a_built_in_algorithms_folder_is_its_builtin_flavor(tmp_path: Path) -> None:
    folder = tmp_path / "job-model"
    folder.mkdir()
    (folder / "metadata.json").write_text('{"algorithm": "xgboost"}')
    (folder / "model.ubj").write_bytes(b"booster")
    archive = tmp_path / "model.tar.gz"
    write_tar_gz(folder, archive)
    assert content_flavor(archive).flavor == "builtin:xgboost"
    (folder / "metadata.json").write_text('{"algorithm": "no-such-thing"}')
    write_tar_gz(folder, archive)
    assert content_flavor(archive).flavor is None


def _linked_archive(tmp_path: Path, members: list[tuple[str, bytes, str | None]]) -> Path:
    """A .tar.gz of ``(name, type, data or link target)`` members, in order."""
    archive = tmp_path / "linked.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                data = (payload or "").encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = payload or ""
                tar.addfile(info)
    return archive


_DESCRIPTOR = '{"flavor": "pickle", "model": "model.pkl"}'


@pytest.mark.parametrize(
    ("members", "link"),
    [
        (
            [
                ("code", tarfile.DIRTYPE, None),
                ("code/real.py", tarfile.REGTYPE, HANDLER),
                ("code/inference.py", tarfile.SYMTYPE, "real.py"),
            ],
            "code/inference.py",
        ),
        (
            [
                ("code", tarfile.DIRTYPE, None),
                ("code/real.py", tarfile.REGTYPE, HANDLER),
                ("code/inference.py", tarfile.LNKTYPE, "code/real.py"),
            ],
            "code/inference.py",
        ),
        (
            [
                ("elsewhere/inference.py", tarfile.REGTYPE, HANDLER),
                ("code", tarfile.SYMTYPE, "elsewhere"),
            ],
            "code",
        ),
        (
            [
                ("descriptor.json", tarfile.REGTYPE, _DESCRIPTOR),
                ("modelyard-model.json", tarfile.SYMTYPE, "descriptor.json"),
            ],
            "modelyard-model.json",
        ),
        (
            [
                ("meta.json", tarfile.REGTYPE, '{"algorithm": "xgboost"}'),
                ("metadata.json", tarfile.LNKTYPE, "meta.json"),
            ],
            "metadata.json",
        ),
    ],
    ids=[
        "symlinked-handler",
        "hardlinked-handler",
        "symlinked-code",
        "symlinked-descriptor",
        "hardlinked-metadata",
    ],
)
def test_a_link_at_a_name_that_decides_the_flavor_is_refused(
    client: Client, tmp_path: Path, members: list[tuple[str, bytes, str | None]], link: str
) -> None:
    """The model server follows links; a check that skipped them said ``sklearn`` for an
    archive whose Python handler (or ``pickle`` descriptor) the server then ran."""
    archive = _linked_archive(tmp_path, members)
    digest = client.artifacts.upload(archive.read_bytes()).digest
    with pytest.raises(InvalidInput, match=rf"'{link}' in the model archive is a link"):
        client.models.register("m", artifact=digest, flavor="sklearn")
    with pytest.raises(NotFound):
        client.models.get("m")  # nothing was registered
