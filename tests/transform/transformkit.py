"""Helpers for the batch-transform tests: a server with its background services, a
registered scikit-learn model, small datasets.

Imported by the test modules (``from transformkit import …``), as ``jobkit`` is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.client.sdk import Client
from modelyard.flavors import save_model
from modelyard.registry.schemas import ModelVersion
from modelyard.runtime import Runtime
from testkit import LiveServer, make_settings

FEATURES = ["a", "b", "c"]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The root fixture's server, plus its background services (as ``modelyard up``)."""
    rt = Runtime(make_settings(tmp_path))
    rt.start_background()
    with LiveServer(rt) as server:
        yield server
    rt.close()


def features(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, len(FEATURES)))


def fitted_model() -> LogisticRegression:
    x = features(300, seed=1)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return LogisticRegression().fit(x, y)


def register_model(client: Client, tmp_path: Path, name: str = "churn") -> ModelVersion:
    """A logistic regression fitted on a NumPy matrix (no column names), as ``name``."""
    folder = tmp_path / f"saved-{name}"
    save_model(fitted_model(), folder, flavor="sklearn")
    return client.models.register(name, path=folder, flavor="sklearn")


def table(n: int, start: int = 0, seed: int = 0) -> pa.Table:
    """``id`` then the features a, b, c."""
    x = features(n, seed)
    columns = {"id": pa.array(range(start, start + n), pa.int64())}
    columns.update({name: pa.array(x[:, j]) for j, name in enumerate(FEATURES)})
    return pa.table(columns)
