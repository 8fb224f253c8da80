"""Fixtures for the built-in algorithm tests: job directories sharing a bytecode cache."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from algokit import JobDir


@pytest.fixture(scope="session")
def pycache(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A bytecode cache shared by the children, where writing it beside sources is off.

    pip compiles bytecode when it installs; an environment that neither has it nor allows
    writing it (PYTHONDONTWRITEBYTECODE) makes every child recompile XGBoost, scikit-learn
    and pandas from source, several seconds each. The cache lives in pytest's cache
    folder, so later sessions reuse it. Nothing else about the run changes.
    """
    if not (sys.flags.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE")):
        return None
    cache = getattr(pytestconfig, "cache", None)  # None with -p no:cacheprovider
    if cache is None:
        return tmp_path_factory.mktemp("pycache")
    return Path(cache.mkdir("algorithms-pycache"))


@pytest.fixture
def job(tmp_path: Path, pycache: Path | None) -> JobDir:
    """A fresh /opt/ml-like job directory."""
    return JobDir(tmp_path / "ml", pycache)


@pytest.fixture
def make_job(tmp_path: Path, pycache: Path | None) -> Callable[[str], JobDir]:
    """Factory for several job directories in one test (named sub-folders)."""
    return lambda name: JobDir(tmp_path / name, pycache)
