"""A model whose signature has a text column: rows travel as objects, ONNX is not tried."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from servekit import request

from modelyard.flavors import load_model, save_model
from modelyard.serving import ServerSettings, build_app


@pytest.fixture(scope="module")
def text_app(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    frame = pd.DataFrame({"text": ["good movie", "bad movie", "great film", "awful film"]})
    pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression())
    pipeline.fit(frame["text"], [1, 0, 1, 0])
    folder: Path = tmp_path_factory.mktemp("text") / "model"
    save_model(pipeline, folder, sample_input=frame)
    return build_app(load_model(folder), ServerSettings(name="sentiment"))


def test_text_rows_in_every_shape(text_app) -> None:  # type: ignore[no-untyped-def]
    runtime = request(text_app, "GET", "/v2/models/sentiment").json()
    assert runtime["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert runtime["runtime"]["engine"] == "native"
    assert "non-numeric" in runtime["runtime"]["reason"]
    r = request(text_app, "POST", "/invocations", json=[{"text": "good film"}, {"text": "bad"}])
    assert r.json() == {"predictions": [1, 0]}
    r = request(
        text_app,
        "POST",
        "/invocations",
        content=b"great movie\nawful movie\n",
        headers={"content-type": "text/csv"},
    )
    assert r.json() == {"predictions": [1, 0]}
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["great"]}]}
    r = request(text_app, "POST", "/v2/models/sentiment/infer", json=body)
    assert r.json()["outputs"][0]["data"] == [1]


def test_text_rows_still_checked(text_app) -> None:  # type: ignore[no-untyped-def]
    r = request(text_app, "POST", "/invocations", json=[{"words": "good"}])
    assert r.status_code == 422 and "missing column 'text'" in r.json()["error"]
    r = request(text_app, "POST", "/invocations", json=[["good", "extra"]])
    assert r.status_code == 422 and "expected 1 features, got 2" in r.json()["error"]
