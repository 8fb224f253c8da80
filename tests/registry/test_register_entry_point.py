"""``models register --entry-point``: the server packages a SageMaker handler with the model.

As SageMaker's ``Model(entry_point=..., source_dir=...)``: the model's files at the root,
the handler's folder as ``code/``, the entry point run as ``code/inference.py``; the
version is that new artifact, flavor ``python`` (issue 14 item 5, consistent with the
content check of issue 13 item 5).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client.sdk import Client
from modelyard.compute.archive import write_tar_gz
from modelyard.errors import InvalidInput
from modelyard.flavors import save_model
from modelyard.serving.handler import Handler
from testkit import LiveServer

HANDLER = """\
import json
import os


def model_fn(model_dir):
    with open(os.path.join(model_dir, "weights.json")) as fh:
        return json.load(fh)


def predict_fn(input_data, model):
    return [sum(row) * model["scale"] for row in input_data]
"""


def _model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.json").write_text(json.dumps({"scale": 2.0}))
    return folder


def _code(tmp_path: Path, name: str = "inference.py", **extra: str) -> Path:
    code = tmp_path / "src"
    code.mkdir(exist_ok=True)
    (code / name).write_text(HANDLER)
    for file, text in extra.items():
        (code / file).write_text(text)
    return code


def _members(client: Client, digest: str) -> dict[str, bytes]:
    data = client.artifacts.read_bytes(digest)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar
            if m.isreg()
        }


def _served_prediction(client: Client, tmp_path: Path, name: str, version: int) -> object:
    """Load the registered version as the model server does (code/inference.py)."""
    folder = client.models.download(name, version, tmp_path / f"served-{version}")
    handler = Handler.load(folder / "code" / "inference.py")
    assert handler.model_fn is not None and handler.predict_fn is not None
    return handler.predict_fn([[1.0, 2.0]], handler.model_fn(str(folder)))


def test_a_folder_and_its_handler_are_packaged_as_code(client: Client, tmp_path: Path) -> None:
    model = _model_folder(tmp_path)
    code = _code(tmp_path, helpers="")
    plain = client.models.register("m", path=model, flavor="onnx")  # content names no flavor
    version = client.models.register(
        "m", artifact=plain.artifact_digest, entry_point="inference.py", source_dir=code
    )
    assert (version.flavor, version.runs_user_code) == ("python", True)
    assert version.artifact_digest != plain.artifact_digest and version.artifact_filename == ""
    assert set(_members(client, version.artifact_digest)) == {
        "weights.json",
        "code/inference.py",
        "code/helpers",
    }
    packaged = version.flavor_metadata["packaged"]
    assert packaged["entry_point"] == "inference.py"
    assert packaged["model_artifact"] == plain.artifact_digest
    assert _served_prediction(client, tmp_path, "m", version.version) == [6.0]
    # The same model and code give the same artifact.
    again = client.models.register(
        "m", artifact=plain.artifact_digest, entry_point="inference.py", source_dir=code
    )
    assert again.artifact_digest == version.artifact_digest


def test_an_entry_point_with_another_name_or_without_a_folder(
    client: Client, tmp_path: Path
) -> None:
    model = _model_folder(tmp_path)
    code = _code(tmp_path, name="serve.py")
    named = client.models.register("m", path=model, entry_point="serve.py", source_dir=code)
    files = _members(client, named.artifact_digest)
    assert files["code/serve.py"].decode() == HANDLER  # the user's script, unmodified
    assert b"serve.py" in files["code/inference.py"]  # generated, runs it
    assert _served_prediction(client, tmp_path, "m", named.version) == [6.0]

    single = client.models.register("m", path=model, entry_point=code / "serve.py")
    assert set(_members(client, single.artifact_digest)) == {
        "weights.json",
        "code/serve.py",
        "code/inference.py",
    }


def test_a_single_file_model_is_placed_at_the_root(client: Client, tmp_path: Path) -> None:
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"scale": 3.0}))
    code = _code(tmp_path)
    version = client.models.register("m", path=weights, entry_point="inference.py", source_dir=code)
    assert set(_members(client, version.artifact_digest)) == {"weights.json", "code/inference.py"}
    assert _served_prediction(client, tmp_path, "m", version.version) == [9.0]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "entry_point 'nope.py' is not in the handler's folder"),
        ("not-a-handler", "defines none of model_fn"),
        ("saved-folder", "saved model folder"),
        ("wrong-flavor", "flavor 'sklearn' does not match"),
        ("two-scripts", "holds both 'serve.py' and inference.py"),
    ],
)
def test_what_cannot_be_packaged_is_refused_and_registers_nothing(
    client: Client, tmp_path: Path, case: str, message: str
) -> None:
    model = _model_folder(tmp_path)
    entry, flavor = "inference.py", None
    code = _code(tmp_path)
    if case == "missing":
        entry = "nope.py"
    elif case == "not-a-handler":
        (code / "inference.py").write_text("print('hello')\n")
    elif case == "saved-folder":
        handler = tmp_path / "h.py"
        handler.write_text("def load(d):\n    return 1\n\ndef predict(m, x):\n    return x\n")
        model = tmp_path / "saved"
        save_model(handler, model, flavor="python")
    elif case == "wrong-flavor":
        flavor = "sklearn"
    elif case == "two-scripts":
        (code / "serve.py").write_text(HANDLER)
        entry = "serve.py"
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        client.models.register("m", path=model, flavor=flavor, entry_point=entry, source_dir=code)
    assert client.models.list().total == 0


def test_rest_needs_both_fields(live_server: LiveServer, tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    write_tar_gz(_model_folder(tmp_path), archive)
    with httpx.Client(base_url=live_server.url + "/api/v1") as http:
        digest = http.put("/artifacts", content=archive.read_bytes()).json()["digest"]
        base = {"name": "m", "artifact_digest": digest, "flavor": "onnx"}
        alone = http.post("/models/m/versions", json=base | {"entry_point": "inference.py"})
        assert alone.status_code == 400 and "source_digest" in alone.text
        orphan = http.post("/models/m/versions", json=base | {"source_digest": digest})
        assert orphan.status_code == 400 and "entry_point" in orphan.text
        climbing = http.post(
            "/models/m/versions",
            json=base | {"entry_point": "../inference.py", "source_digest": digest},
        )
        assert climbing.status_code == 400 and "entry_point" in climbing.text
        assert http.get("/models/m").status_code == 404


def test_cli_register_with_entry_point_and_the_flavor_help(tmp_path: Path) -> None:
    runner = CliRunner()
    model, code = _model_folder(tmp_path), _code(tmp_path)
    done = runner.invoke(
        app,
        [
            "--json", "models", "register", "m", str(model),
            "--entry-point", "inference.py", "--source-dir", str(code),
        ],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    shown = json.loads(done.output)
    assert (shown["flavor"], shown["runs_user_code"]) == ("python", True)
    helped = runner.invoke(app, ["models", "register", "--help"])
    flat = " ".join(helped.output.replace("│", " ").split())  # rich wraps the help in a box
    assert "onnx, torchscript, python (a handler that runs its code)" in flat
    assert "--entry-point" in flat and "--source-dir" in flat
