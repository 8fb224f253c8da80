"""The links the real ``mlflow`` client prints open the console's pages: MLflow's URL
shapes (experiments and runs by id) are redirected to the console's routes (by name)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from consolekit import Console, sign_in

MLFLOW_SCRIPT = """
import mlflow
mlflow.set_experiment("from-mlflow")
with mlflow.start_run(run_name="mlflow-run") as run:
    mlflow.log_metric("acc", 0.9)
print("RUN_ID", run.info.run_id)
"""


def _mlflow_run(console: Console, tmp_path: Path) -> tuple[str, str, str]:
    """Log a run with the mlflow client; the run and experiment links it printed, and the
    run's id."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": console.url,
        "MLFLOW_TRACKING_TOKEN": console.admin_token,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", MLFLOW_SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    run_link = re.search(r"View run mlflow-run at: (\S+)", done.stdout)
    experiment_link = re.search(r"View experiment at: (\S+)", done.stdout)
    run_id = re.search(r"^RUN_ID (\S+)$", done.stdout, re.MULTILINE)
    assert run_link and experiment_link and run_id, done.stdout
    return run_link[1], experiment_link[1], run_id[1]


def test_the_links_the_mlflow_client_prints_open_the_run_and_the_experiment(
    console: Console, page: Any, tmp_path: Path
) -> None:
    run_link, experiment_link, run_id = _mlflow_run(console, tmp_path)
    experiment_id = console.admin.tracking.get_experiment("from-mlflow").id
    assert run_link == f"{console.url}/#/experiments/{experiment_id}/runs/{run_id}"
    assert experiment_link == f"{console.url}/#/experiments/{experiment_id}"

    sign_in(page, console.url, console.admin_token)
    page.goto(run_link)
    page.wait_for_url(f"{console.url}/#/runs/{run_id}")
    assert page.wait_for_selector("section.card h2").inner_text() == "Run mlflow-run"
    assert page.locator("table.metrics tbody tr").first.inner_text().startswith("acc")
    page.goto(experiment_link)
    page.wait_for_url(f"{console.url}/#/experiments/from-mlflow")
    page.wait_for_selector("table.runs a:text-is('mlflow-run')")
    # Back skips the MLflow-shaped address: it was replaced, not added to the history.
    page.go_back()
    page.wait_for_url(f"{console.url}/#/runs/{run_id}")
    assert page.locator("[role=alert]").count() == 0


def test_other_mlflow_shapes_and_unknown_ids(console: Console, page: Any) -> None:
    c = console.admin
    default = c.tracking.create_experiment("Default")
    deeper = console.runs["deeper"]
    sign_in(page, console.url, console.admin_token)
    # MLflow's default experiment is "0"; a tab after the id opens the experiment.
    page.goto(f"{console.url}/#/experiments/0")
    page.wait_for_url(f"{console.url}/#/experiments/Default")
    page.goto(f"{console.url}/#/experiments/{default.id}/overview")
    page.wait_for_url(f"{console.url}/#/experiments/Default")
    page.goto(f"{console.url}/#/experiments/{default.id}/runs/{deeper}/model-metrics")
    page.wait_for_url(f"{console.url}/#/runs/{deeper}")
    page.goto(f'{console.url}/#/compare-runs?runs=["{deeper}","{console.runs["baseline"]}"]')
    page.wait_for_url(f"{console.url}/#/compare?runs={deeper}%2C{console.runs['baseline']}")
    page.wait_for_selector("h2:text-is('Compare 2 runs')")
    page.goto(f"{console.url}/#/models/churn-model/versions/1")
    page.wait_for_url(f"{console.url}/#/models/churn-model?version=1")
    page.wait_for_selector("h2:text-is('churn-model v1')")
    # An experiment whose name looks like an id is the experiment of that name.
    c.tracking.create_experiment("0")
    c.tracking.create_run("0", name="named-zero")
    page.goto(f"{console.url}/#/experiments/0")
    page.wait_for_selector("table.runs a:text-is('named-zero')")
    assert page.url == f"{console.url}/#/experiments/0"
    # An id that names nothing is the usual "does not exist", not a redirect loop.
    page.goto(f"{console.url}/#/experiments/exp-0000000000nothing0here0")
    alert = page.wait_for_selector("[role=alert]")
    assert "404" in alert.inner_text() and "does not exist" in alert.inner_text()
    assert page.url == f"{console.url}/#/experiments/exp-0000000000nothing0here0"
