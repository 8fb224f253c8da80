"""Input the model refuses is the caller's error (422), not the server's (500)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from servekit import Descriptor, app_for, call, request

from modelyard.flavors import save_model
from modelyard.serving import ServerSettings
from modelyard.serving.app import ModelServer
from modelyard.serving.loading import load_servable


class ThreeFeatures:
    """A model with no signature that, like scikit-learn, checks its input's width."""

    flavor = "python"

    def __init__(self) -> None:
        self.native = self
        self.descriptor = Descriptor(None)

    def predict(self, data: Any) -> Any:
        x = np.asarray(data, dtype=float)
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValueError(f"X has {x.shape[-1]} features, but the model expects 3")
        return x.sum(axis=1)


@pytest.mark.parametrize(
    ("signature", "status"),
    [(True, 422), (False, 400)],
    ids=["signature-mismatch", "refused-by-the-flavor"],
)
def test_sklearn_with_the_wrong_number_of_features_is_4xx(
    tmp_path: Path, signature: bool, status: int
) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 4))
    estimator = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    folder = tmp_path / "model"
    save_model(estimator, folder, **({"sample_input": x} if signature else {}))
    settings = ServerSettings(name="iris", model_dir=folder, use_onnx=False)
    app = ModelServer(settings, load_servable(settings))
    csv = {"content-type": "text/csv"}
    ok = request(app, "POST", "/invocations", content=b"1,2,3,4\n", headers=csv)
    assert ok.status_code == 200, ok.text
    wrong = request(app, "POST", "/invocations", content=b"1,2\n", headers=csv)
    assert wrong.status_code == status, wrong.text
    assert "4" in wrong.json()["error"] and "2" in wrong.json()["error"]
    empty = request(app, "POST", "/invocations", content=b"", headers=csv)
    assert empty.status_code == 400, empty.text
    v2 = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}
    assert request(app, "POST", "/v2/models/iris/infer", json=v2).status_code == status


def test_a_refused_request_in_a_batch_fails_alone_and_the_others_are_answered() -> None:
    app = app_for(ThreeFeatures(), max_batch_size=32, max_wait_ms=5)

    async def burst(client: httpx.AsyncClient) -> list[httpx.Response]:
        rows = [[i, 0] if i == 5 else [i, 0, 0] for i in range(24)]
        return await asyncio.gather(*(client.post("/invocations", json=[row]) for row in rows))

    responses = call(app, burst)
    for i, response in enumerate(responses):
        if i == 5:
            assert response.status_code == 422, response.text
            assert response.json()["code"] == "input_rejected"
            assert response.json()["error"] == (
                "the model refused this input: ValueError: X has 2 features, "
                "but the model expects 3"
            )
        else:
            assert response.json() == {"predictions": [float(i)]}, i


def test_a_model_answering_the_wrong_number_of_rows_is_its_failure() -> None:
    class Short(ThreeFeatures):
        def predict(self, data: Any) -> Any:
            return np.zeros(1)

    r = request(app_for(Short()), "POST", "/invocations", json=[[1, 2, 3], [4, 5, 6]])
    assert r.status_code == 500 and r.json()["code"] == "model_error"
    assert "expected one prediction per row" in r.json()["error"]
