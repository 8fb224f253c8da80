"""Tiny training data shared by the flavor tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest


@pytest.fixture
def xy() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


@pytest.fixture
def frame(xy: tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]) -> pd.DataFrame:
    x, _ = xy
    return pd.DataFrame(x, columns=["a", "b", "c", "d"])


@pytest.fixture(autouse=True)
def _no_trusted_types_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """The allow-list under test is the built-in one, whatever the developer's shell sets."""
    monkeypatch.delenv("MODELYARD_TRUSTED_TYPES", raising=False)
