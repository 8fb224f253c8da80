"""The real MLflow client pointed at a live modelyard server, with MLflow's global state
(tracking URI, active run, autologging) reset after each test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Importing mlflow starts its telemetry client, which calls config.mlflow-telemetry.io:
# switch it off before the first import (a monkeypatched variable would come too late).
# Tests never reach beyond this machine.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
# With no tracking URI, MLflow 3 falls back to sqlite:///mlflow.db in the working
# directory (the repository): after a test resets the URI, anything MLflow still does
# (an autolog or atexit hook) must land in a temporary folder instead.
os.environ["MLFLOW_TRACKING_URI"] = (
    f"sqlite:///{Path(tempfile.mkdtemp(prefix='modelyard-mlflow-default-')) / 'mlflow.db'}"
)
mlflow = pytest.importorskip("mlflow")

from testkit import LiveServer  # noqa: E402


@pytest.fixture
def mlflow_url(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    # Nothing outside tmp_path: MLflow's temp folders, caches and ~/.mlflow.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    # A failing request should fail the test now, not after minutes of retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    mlflow.set_tracking_uri(live_server.url)
    try:
        yield live_server.url
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.autolog(disable=True)
        mlflow.set_tracking_uri(None)
        from mlflow.tracking import fluent

        fluent._active_experiment_id = None
