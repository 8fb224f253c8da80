"""Helpers for the model-server tests: tiny models, an in-process client, saved folders."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from modelyard.flavors import Signature, TensorSpec, save_model
from modelyard.serving import ModelServer, ServerSettings, build_app

T = TypeVar("T")


class Descriptor:
    def __init__(self, signature: Signature | None) -> None:
        self.signature = signature


class LinearModel:
    """``predict(x) = x @ weights``; counts calls and rows; raises on a poisoned row.

    A row whose first feature is -999 makes ``predict`` raise RuntimeError, standing in
    for a model that breaks on one input (its failure, a 500; a ValueError or TypeError
    would say the input was refused, a 422).
    """

    flavor = "python"

    def __init__(
        self,
        weights: list[float],
        *,
        columns: list[str] | None = None,
        proba: bool = False,
        delay: float = 0.0,
    ) -> None:
        self.weights = np.asarray(weights, dtype=float)
        self.native = self
        self.calls: list[int] = []
        self.lock = threading.Lock()
        self.delay = delay
        if columns is not None:
            inputs = [TensorSpec(name=c, dtype="float64", shape=[-1]) for c in columns]
        else:
            inputs = [TensorSpec(name=None, dtype="float64", shape=[-1, len(weights)])]
        outputs = [TensorSpec(name=None, dtype="float64", shape=[-1])]
        self.descriptor = Descriptor(Signature(inputs=inputs, outputs=outputs))
        self.predict_proba = self._proba if proba else None

    def predict(self, data: Any) -> Any:
        x = np.asarray(data, dtype=float)
        with self.lock:
            self.calls.append(len(x))
        if self.delay:
            threading.Event().wait(self.delay)
        if np.any(x[:, 0] == -999):
            raise RuntimeError("poisoned row")
        return x @ self.weights

    def _proba(self, data: Any) -> Any:
        score = 1 / (1 + np.exp(-self.predict(data)))
        return np.column_stack([1 - score, score])


def app_for(model: Any, **settings: Any) -> ModelServer:
    settings.setdefault("name", "demo")
    settings.setdefault("use_onnx", False)
    return build_app(model, ServerSettings(**settings))


def call(app: ModelServer, fn: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run ``fn(client)`` against the app in a fresh event loop (httpx ASGITransport)."""

    async def main() -> T:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            return await fn(client)

    return asyncio.run(main())


def request(app: ModelServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def one(client: httpx.AsyncClient) -> httpx.Response:
        return await client.request(method, path, **kwargs)

    return call(app, one)


def saved_sklearn_model(folder: Path, *, frame: bool = True) -> tuple[Path, Any, Any]:
    """A small LogisticRegression saved with the sklearn flavor; (folder, estimator, X)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    x = rng.normal(size=(80, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    data: Any = pd.DataFrame(x, columns=["a", "b", "c"]) if frame else x
    estimator = LogisticRegression().fit(data, y)
    path = folder / "model"
    save_model(estimator, path, sample_input=data)
    return path, estimator, x
