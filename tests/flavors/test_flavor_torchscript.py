"""PyTorch models as TorchScript; torch.save pickles only when allowed and vouched for.

``make venv`` installs PyTorch's CPU build beside the locked packages, so these tests run
against real modules; one test hides torch to check the message a user without it gets.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from modelyard.errors import ArtifactCorrupted, ConfigurationError, InvalidInput, UntrustedModel
from modelyard.flavors import MODEL_FILE, ModelDescriptor, load_model, save_model, sha256_file


class TinyNet(torch.nn.Module):
    """Two layers and a softmax: class probabilities for 4 features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.out(torch.relu(self.hidden(x))), dim=1)


class TwoOutputs(torch.nn.Module):
    """Returns (score, doubled score): the flavor serves the first."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score = self.linear(x).squeeze(1)
        return score, score * 2


class BagOfIds(torch.nn.Module):
    """Mean embedding of integer token ids: needs an int64 tensor, not floats."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.embedding = torch.nn.Embedding(10, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids).mean(dim=1)


class Runs:
    """Unpickling this calls ``os.makedirs(marker)``: the stand-in for a payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.makedirs, (str(self.marker),))


def expected(module: torch.nn.Module, x: Any, dtype: torch.dtype = torch.float32) -> Any:
    with torch.no_grad():
        out = module(torch.as_tensor(np.asarray(x)).to(dtype))
    return (out[0] if isinstance(out, tuple) else out).numpy()


@pytest.fixture
def x() -> Any:
    return np.random.default_rng(0).normal(size=(6, 4))  # float64, as NumPy makes it


def test_scripted_module_round_trip(tmp_path: Path, x: Any) -> None:
    net = TinyNet().eval()
    descriptor = save_model(torch.jit.script(net), tmp_path / "m", sample_input=x)
    assert descriptor.flavor == "torchscript"
    assert set(descriptor.files) == {"model.pt"}
    assert descriptor.extra == {"format": "torchscript"}
    assert descriptor.framework["torch"] == torch.__version__
    assert descriptor.signature is not None
    assert [(s.dtype, s.shape) for s in descriptor.signature.inputs] == [("float64", [-1, 4])]
    assert descriptor.signature.outputs is not None
    assert [(s.dtype, s.shape) for s in descriptor.signature.outputs] == [("float32", [-1, 3])]

    loaded = load_model(tmp_path / "m", expected_digests=descriptor.files)
    assert isinstance(loaded.native, torch.jit.ScriptModule)
    assert loaded.predict_proba is None  # a module's output may be logits or anything
    want = expected(net, x)
    np.testing.assert_allclose(loaded.predict(x), want, rtol=1e-6)
    np.testing.assert_allclose(loaded.predict(x.tolist()), want, rtol=1e-6)  # JSON-like lists
    np.testing.assert_allclose(loaded.predict(x.astype(np.float32)), want, rtol=1e-6)


def test_traced_module_reads_columns_in_signature_order(tmp_path: Path) -> None:
    rows = np.random.default_rng(1).normal(size=(5, 3))
    frame = pd.DataFrame(rows, columns=["a", "b", "c"])
    net = TwoOutputs().eval()
    traced = torch.jit.trace(net, torch.zeros(1, 3))
    descriptor = save_model(traced, tmp_path / "m", sample_input=frame)
    assert descriptor.signature is not None
    assert descriptor.signature.column_names == ["a", "b", "c"]
    loaded = load_model(tmp_path / "m")
    want = expected(net, rows)
    np.testing.assert_allclose(loaded.predict(frame), want, rtol=1e-6)
    shuffled = frame[["c", "a", "b"]].to_dict(orient="records")  # records, any key order
    np.testing.assert_allclose(loaded.predict(shuffled), want, rtol=1e-6)


def test_integer_inputs_keep_the_signature_dtype(tmp_path: Path) -> None:
    ids = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    net = BagOfIds().eval()
    descriptor = save_model(torch.jit.script(net), tmp_path / "m", sample_input=ids)
    assert descriptor.signature is not None
    assert descriptor.signature.inputs[0].dtype == "int64"
    loaded = load_model(tmp_path / "m")
    np.testing.assert_allclose(
        loaded.predict([[1, 2, 3], [4, 5, 6]]), expected(net, ids, torch.long)
    )


def test_input_the_module_refuses_is_invalid_input(tmp_path: Path, x: Any) -> None:
    save_model(torch.jit.script(TinyNet()), tmp_path / "m", sample_input=x)
    loaded = load_model(tmp_path / "m")
    with pytest.raises(InvalidInput, match="the PyTorch model refused the input"):
        loaded.predict(np.ones((2, 3)))  # 3 features, the first layer takes 4
    with pytest.raises(InvalidInput, match="does not convert"):
        loaded.predict([["a", "b", "c", "d"]])


def test_a_module_without_a_tensor_output_is_refused_at_save(tmp_path: Path, x: Any) -> None:
    class Named(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"score": x.sum(dim=1)}

    with pytest.raises(InvalidInput, match="returned a dict"):
        save_model(torch.jit.script(Named()), tmp_path / "m", sample_input=x)
    assert not (tmp_path / "m").exists()


def test_a_plain_module_must_be_scripted(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"ScriptModule.*torch\.jit\.script\(model\)"):
        save_model(TinyNet(), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_torch_save_file_is_refused_without_allow_pickle(tmp_path: Path) -> None:
    torch.save(TinyNet(), tmp_path / "net.pt")
    with pytest.raises(UntrustedModel, match=r"torch\.save pickle, not a TorchScript archive"):
        save_model(tmp_path / "net.pt", tmp_path / "m")
    assert not (tmp_path / "m").exists()
    (tmp_path / "noise.pt").write_bytes(b"neither zip nor pickle")
    with pytest.raises(UntrustedModel, match="not a TorchScript archive"):
        save_model(tmp_path / "noise.pt", tmp_path / "m")


def test_a_pickled_module_loads_only_with_allow_pickle_and_the_digest(
    tmp_path: Path, x: Any
) -> None:
    net = TinyNet().eval()
    descriptor = save_model(net, tmp_path / "m", allow_pickle=True, sample_input=x)
    assert descriptor.flavor == "torchscript"
    assert descriptor.extra == {"format": "pickle"}
    with pytest.raises(UntrustedModel, match="allow_pickle=True"):
        load_model(tmp_path / "m")
    with pytest.raises(UntrustedModel, match=r"needs the registry's SHA-256 of model\.pt"):
        load_model(tmp_path / "m", allow_pickle=True)
    loaded = load_model(tmp_path / "m", allow_pickle=True, expected_digests=descriptor.files)
    assert isinstance(loaded.native, TinyNet)
    np.testing.assert_allclose(loaded.predict(x), expected(net, x), rtol=1e-6)


def _rewrite(folder: Path, name: str, data: bytes) -> None:
    """Replace ``name`` and the descriptor's digest of it, as one who can write both can."""
    (folder / name).write_bytes(data)
    descriptor = ModelDescriptor.model_validate_json((folder / MODEL_FILE).read_text())
    files = {**descriptor.files, name: sha256_file(folder / name)}
    (folder / MODEL_FILE).write_text(
        descriptor.model_copy(update={"files": files}).model_dump_json()
    )


def _with_pickle(archive: Path, entries: tuple[str, ...], payload: bytes) -> bytes:
    """``archive`` with the named entries (``<prefix>/<entry>``) replaced by ``payload``."""
    out = archive.with_suffix(".forged")
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(out, "w") as forged:
        for name in source.namelist():
            replaced = name.split("/", 1)[-1] in entries
            forged.writestr(name, payload if replaced else source.read(name))
    return out.read_bytes()


def test_a_pickle_in_a_torchscript_archive_is_not_run(tmp_path: Path, x: Any) -> None:
    descriptor = save_model(torch.jit.script(TinyNet()), tmp_path / "m", sample_input=x)
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(Runs(marker), protocol=2)
    forged = _with_pickle(tmp_path / "m" / "model.pt", ("data.pkl", "constants.pkl"), payload)
    _rewrite(tmp_path / "m", "model.pt", forged)
    # PyTorch's own unpickler for TorchScript names the function instead of calling it.
    with pytest.raises(InvalidInput, match=r"not a loadable TorchScript archive.*makedirs"):
        load_model(tmp_path / "m")
    assert not marker.exists()
    with pytest.raises(UntrustedModel, match="not the registry's"):
        load_model(tmp_path / "m", expected_digests=descriptor.files)


def test_a_torch_save_pickle_posing_as_torchscript_is_refused(tmp_path: Path, x: Any) -> None:
    descriptor = save_model(torch.jit.script(TinyNet()), tmp_path / "m", sample_input=x)
    torch.save(TinyNet(), tmp_path / "net.pt")
    marker = tmp_path / "payload-ran"
    forged = _with_pickle(tmp_path / "net.pt", ("data.pkl",), pickle.dumps(Runs(marker)))
    _rewrite(tmp_path / "m", "model.pt", forged)  # the descriptor still says torchscript
    with pytest.raises(UntrustedModel, match=r"torch\.save pickle, not a TorchScript archive"):
        load_model(tmp_path / "m")
    with pytest.raises(UntrustedModel, match="not the registry's"):
        load_model(tmp_path / "m", allow_pickle=True, expected_digests=descriptor.files)
    assert not marker.exists()


def test_a_changed_file_is_refused_before_torch_reads_it(tmp_path: Path, x: Any) -> None:
    descriptor = save_model(torch.jit.script(TinyNet()), tmp_path / "m", sample_input=x)
    torch.jit.save(torch.jit.script(TwoOutputs()), str(tmp_path / "m" / "model.pt"))
    with pytest.raises(ArtifactCorrupted, match=r"model\.pt .* has SHA-256"):
        load_model(tmp_path / "m")
    other = {"model.pt": "0" * 64}
    save_model(torch.jit.script(TinyNet()), tmp_path / "n", sample_input=x)
    with pytest.raises(UntrustedModel, match="not the registry's"):
        load_model(tmp_path / "n", expected_digests=other)
    assert load_model(tmp_path / "n", expected_digests=descriptor.files).flavor == "torchscript"


def test_a_torchscript_file_path_is_copied(tmp_path: Path, x: Any) -> None:
    net = TinyNet().eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "net.pt"))
    descriptor = save_model(tmp_path / "net.pt", tmp_path / "m")  # flavor from the suffix
    assert descriptor.flavor == "torchscript"
    assert descriptor.files["model.pt"] == sha256_file(tmp_path / "net.pt")
    assert descriptor.signature is None
    np.testing.assert_allclose(load_model(tmp_path / "m").predict(x), expected(net, x), rtol=1e-6)


def test_torchscript_without_torch_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"archive")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ConfigurationError, match=r"needs torch.*pip install torch"):
        save_model(folder / "model.pt", tmp_path / "saved", flavor="torchscript")
    assert not (tmp_path / "saved").exists()
    descriptor = ModelDescriptor(
        flavor="torchscript", files={"model.pt": sha256_file(folder / "model.pt")}
    )
    (folder / MODEL_FILE).write_text(descriptor.model_dump_json())
    with pytest.raises(ConfigurationError, match="torchscript flavor needs torch"):
        load_model(folder)


def test_modelyard_imports_without_torch() -> None:
    code = (
        "import sys\n"
        "class NoTorch:\n"  # import torch raises ModuleNotFoundError, as when not installed
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import modelyard, modelyard.flavors, modelyard.serving\n"
        "print('torchscript' in modelyard.flavors.FLAVORS, 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True False"
