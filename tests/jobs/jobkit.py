"""Helpers for the jobs tests: a live server that runs the controller, scripts, waiting.

Imported by the test modules (``from jobkit import live_server``) rather than kept in a
``conftest.py``, so ``from conftest import …`` keeps meaning the suite's root conftest.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from modelyard.client.estimators import Estimator
from modelyard.client.sdk import Client
from modelyard.compute.backends import backend_class
from modelyard.compute.backends.base import Capacity, ComputeBackend
from modelyard.runtime import Runtime
from testkit import LiveServer, make_settings

T = TypeVar("T")


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The root fixture's server, plus its jobs controller (as ``modelyard up`` runs it)."""
    rt = Runtime(make_settings(tmp_path))
    rt.start_background()
    with LiveServer(rt) as server:
        yield server
    rt.close()


def source(tmp_path: Path, script: str, name: str = "train.py", **files: str) -> Path:
    """A source folder holding ``script`` (dedented) as ``name`` and any other ``files``."""
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(script))
    for rel, text in files.items():
        (folder / rel).write_text(textwrap.dedent(text))
    return folder


def estimator(client: Client, tmp_path: Path, script: str, **kwargs: Any) -> Estimator:
    return Estimator("train.py", source(tmp_path, script), client=client, **kwargs)


def admission_looks(monkeypatch: pytest.MonkeyPatch, backend: str = "local") -> Callable[[], int]:
    """Count the jobs controller's admission looks at ``backend``: its ``capacity()`` calls.

    The controller asks a backend's capacity once for each Pending job it considers, and
    decides (claims the job, or leaves it Pending) before it looks again. So once the count
    has grown by two since a moment when exactly one job was Pending, that job was looked
    at and the decision is in the database: a check that it is still Pending cannot pass
    merely because the controller has not got round to it.
    """
    cls = backend_class(backend)
    real = cls.capacity
    lock = threading.Lock()
    count = 0

    def counted(self: ComputeBackend) -> Capacity:
        nonlocal count
        with lock:
            count += 1
        return real(self)

    monkeypatch.setattr(cls, "capacity", counted)

    def looks() -> int:
        with lock:
            return count

    return looks


def wait_for(check: Callable[[], T | None], timeout: float = 60.0, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
