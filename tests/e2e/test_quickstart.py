"""The main job runs end to end on the embedded default and says what it did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
