"""Helpers for the endpoints tests: tiny registered models and replica clean-up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from modelyard.client.sdk import Client
from modelyard.endpoints.processes import started_by
from modelyard.flavors import save_model
from testkit import free_port

ROWS = [[0.5, -0.2, 0.1], [-1.0, 0.3, 2.0]]


def sklearn_version(
    client: Client, folder: Path, name: str = "churn", *, approve: bool = True
) -> int:
    """Register (and approve) a small LogisticRegression; its version number."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    path = folder / f"model-{name}-{len(list(folder.glob('model-*')))}"
    save_model(LogisticRegression().fit(x, y), path, sample_input=x)
    version = client.models.register(name, path=path, flavor="sklearn").version
    if approve:
        client.models.approve(name, version, reason="test")
    return version


def failing_version(client: Client, folder: Path, name: str = "churn") -> int:
    """An approved ``python`` model whose predict raises: every invocation is a 500."""
    code = folder / f"failing-{len(list(folder.glob('failing-*')))}"
    code.mkdir(parents=True)
    (code / "handler.py").write_text(
        textwrap.dedent(
            """
            def load(model_dir):
                return None

            def predict(model, data):
                raise RuntimeError("this model always fails")
            """
        )
    )
    path = code.parent / f"{code.name}-saved"
    save_model(code / "handler.py", path, flavor="python")
    version = client.models.register(name, path=path, flavor="python").version
    client.models.approve(name, version, reason="test")
    return version


def stop_all_replicas(home: Path) -> None:
    """Kill every replica process started under ``home`` (tests leave none behind)."""
    root = home / "endpoints" / "replicas"
    if not root.is_dir():
        return
    for sup_file in root.glob("*/*/supervisor.json"):
        with contextlib.suppress(OSError, ValueError):
            data: dict[str, Any] = json.loads(sup_file.read_text())
            written = sup_file.stat().st_mtime
            for key in ("pid", "child_pid"):
                with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
                    pid = int(data[key])
                    if started_by(pid, written):  # never a process that reused the pid
                        os.kill(pid, signal.SIGKILL)


def unloadable_version(client: Client, folder: Path, name: str = "churn") -> int:
    """An approved ``python`` model whose load raises: its replicas never become ready."""
    code = folder / f"unloadable-{len(list(folder.glob('unloadable-*')))}"
    code.mkdir(parents=True)
    (code / "handler.py").write_text(
        textwrap.dedent(
            """
            def load(model_dir):
                raise RuntimeError("this model cannot be loaded")

            def predict(model, data):
                return data
            """
        )
    )
    path = code.parent / f"{code.name}-saved"
    save_model(code / "handler.py", path, flavor="python")
    version = client.models.register(name, path=path, flavor="python").version
    client.models.approve(name, version, reason="test")
    return version


class UpServer:
    """``modelyard up`` as a real subprocess on a free port, its output in ``log``."""

    def __init__(self, home: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 (closed in wait())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard.cli", "up", "--port", str(self.port)],
            env={**os.environ, "MODELYARD_HOME": str(home), **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while not self._ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"modelyard up did not start: {self.log()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"modelyard up exited: {self.log()}")
        try:
            return httpx.get(f"{self.url}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the process to end; its exit status."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._log.close()
