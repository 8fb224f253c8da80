"""A TorchScript model through the model server, and through the registry to the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from servekit import app_for, request

from modelyard.client.sdk import Client
from modelyard.flavors import load_model, save_model


class Scorer(torch.nn.Module):
    """Class probabilities for 3 features (a real module, scripted for saving)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden = torch.nn.Linear(3, 5)
        self.out = torch.nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.out(torch.tanh(self.hidden(x))), dim=1)


ROWS = np.random.default_rng(3).normal(size=(4, 3))


def expected(net: torch.nn.Module, rows: Any) -> Any:
    with torch.no_grad():
        return net(torch.as_tensor(np.asarray(rows), dtype=torch.float32)).numpy()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Scorer]:
    net = Scorer().eval()
    save_model(torch.jit.script(net), tmp_path / "model", sample_input=ROWS)
    return tmp_path / "model", net


def test_the_server_answers_with_the_modules_predictions(saved: tuple[Path, Scorer]) -> None:
    folder, net = saved
    app = app_for(load_model(folder), name="scorer", use_onnx=True)
    info = request(app, "GET", "/v2/models/scorer").json()
    assert info["runtime"]["engine"] == "native"
    assert "no ONNX conversion for flavor 'torchscript'" in info["runtime"]["reason"]
    want = expected(net, ROWS)

    r = request(app, "POST", "/invocations", json={"instances": ROWS.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], want, rtol=1e-6)

    body = {"inputs": [{"name": "input-0", "shape": [4, 3], "datatype": "FP32",
                        "data": ROWS.astype(np.float32).ravel().tolist()}]}  # fmt: skip
    r = request(app, "POST", "/v2/models/scorer/infer", json=body)
    assert r.status_code == 200, r.text
    output = r.json()["outputs"][0]
    np.testing.assert_allclose(np.reshape(output["data"], output["shape"]), want, rtol=1e-6)


def test_the_server_refuses_rows_of_the_wrong_width(saved: tuple[Path, Scorer]) -> None:
    folder, _ = saved
    app = app_for(load_model(folder), name="scorer")
    r = request(app, "POST", "/invocations", json=[[1.0, 2.0]])
    assert r.status_code == 422
    assert "expected 3 features, got 2" in r.text


def test_a_table_model_takes_records_in_any_column_order(tmp_path: Path) -> None:
    net = Scorer().eval()
    frame = pd.DataFrame(ROWS, columns=["age", "income", "tenure"])
    save_model(torch.jit.script(net), tmp_path / "model", sample_input=frame)
    app = app_for(load_model(tmp_path / "model"), name="scorer")
    records = frame[["tenure", "age", "income"]].to_dict(orient="records")
    r = request(app, "POST", "/invocations", json={"instances": records})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], expected(net, ROWS), rtol=1e-6)


def test_registered_torch_model_records_its_signature_and_serves(
    client: Client, saved: tuple[Path, Scorer], tmp_path: Path
) -> None:
    folder, net = saved
    version = client.models.register("scorer", path=folder)
    assert version.flavor == "torchscript"
    assert [(t.name, t.type, t.shape) for t in version.signature.inputs] == [
        ("input_0", "float64", [-1, 3])
    ]
    assert [(t.type, t.shape) for t in version.signature.outputs] == [("float32", [-1, 2])]

    fetched = client.models.download("scorer", version.version, tmp_path / "fetched")
    loaded = load_model(fetched, expected_digests=load_model(folder).descriptor.files)
    app = app_for(loaded, name="scorer")
    r = request(app, "POST", "/invocations", json={"instances": ROWS.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], expected(net, ROWS), rtol=1e-6)
