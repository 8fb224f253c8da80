"""The main job runs end to end on the embedded default and says what it did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelyard.config import Settings
from modelyard.console import static_dir
from modelyard.runtime import Runtime
from testkit import LiveServer

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_the_lifecycle(tmp_path: Path) -> None:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "qs"), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # trains, deploys and runs a transform job: ~30 s on a quiet machine
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "customers v1: 50000 rows" in out
    assert "v1: PASSED" in out and "v2: FAILED" in out
    assert "every customer has an email: 130 failing rows" in out
    assert "monthly_spend" in out and "SHIFTED" in out
    assert "Completed after 1 attempt(s)" in out  # the built-in XGBoost job
    assert "validation:auc = 0." in out and "model artifact" in out
    assert "inputs: churn-train v1 (train), churn-validation v1 (validation)" in out
    assert "registered churn v1: PendingManualApproval" in out
    assert "flavor builtin:xgboost, signature tenure_months:int64" in out
    assert "churn v1: Approved by local" in out and "alias production" in out
    assert "evaluation run run-" in out and "churn-validation v1" in out  # lineage
    assert "datasets.register_version" in out and "jobs.submit" in out  # the audit trail
    assert "models.approve_version" in out
    assert "endpoint churn: variant primary, model churn:1" in out
    assert "-> churn risk 0." in out
    assert "10000 rows in, 10000 out, 0 errors -> dataset churn-validation-predictions v1" in out
    assert "endpoint churn deleted" in out
    assert "http://127.0.0.1:8765/#/runs/run-" in out
    assert (tmp_path / "qs" / "modelyard.db").exists()
    _the_console_urls_answer(out, tmp_path / "qs")


def _the_console_urls_answer(out: str, home: Path) -> None:
    """The console URLs the quickstart ends with, on a server over its home: the page is
    the console (not the 503 "not built" page; `make quickstart` builds it) and the runs
    they name exist."""
    if not (static_dir() / "index.html").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("the console is not built (make unit builds it first)")
        pytest.skip("the console is not built: run 'make console'")
    urls = re.findall(r"^\s*http://127\.0\.0\.1:8765/(#/\S+)", out, re.MULTILINE)
    assert len(urls) == 4, out
    runs = re.findall(r"\brun-[0-9a-z]+\b", " ".join(u for u in urls if "runs" in u))
    assert len(runs) == 3, urls  # the training run, and twice in the compare URL
    runtime = Runtime(Settings.from_env(home=home))
    try:
        with LiveServer(runtime) as server:
            page = httpx.get(server.url + "/")
            assert page.status_code == 200, page.text
            assert page.headers["content-type"].startswith("text/html")
            assert page.content == (static_dir() / "index.html").read_bytes()
            for run_id in runs:
                assert httpx.get(f"{server.url}/api/v1/runs/{run_id}").status_code == 200
    finally:
        runtime.close()
