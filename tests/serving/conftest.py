"""Fixtures for the model-server tests: saved models are built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from servekit import saved_sklearn_model


@pytest.fixture(scope="session")
def sklearn_table_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """A LogisticRegression fitted on a DataFrame with columns a, b, c: (folder, est, X)."""
    return saved_sklearn_model(tmp_path_factory.mktemp("sk-table"), frame=True)


@pytest.fixture(scope="session")
def sklearn_array_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """The same model fitted on a numpy array (a tensor signature of width 3)."""
    return saved_sklearn_model(tmp_path_factory.mktemp("sk-array"), frame=False)
