"""modelyard answers as MLflow entities (proto3 JSON with MLflow's snake_case names).

Ids: a modelyard experiment id (``exp-...``) is the MLflow ``experiment_id``, except
that the experiment named ``Default`` is MLflow's default experiment ``"0"``. A run id
(``run-...``) is both ``run_id`` and ``run_uuid``. Times are milliseconds since the
epoch; NaN and infinities travel as the strings proto3 JSON uses.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from modelyard.tracking.schemas import Experiment, Point, Run

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
GIT_COMMIT_TAG = "mlflow.source.git.commit"


def ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def number(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def key_values(items: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in items.items()]


def mlflow_experiment_id(experiment: Experiment) -> str:
    return DEFAULT_EXPERIMENT_ID if experiment.name == DEFAULT_EXPERIMENT_NAME else experiment.id


def run_artifact_uri(experiment_id: str, run_id: str) -> str:
    """Where MLflow's client sends a run's artifacts: the server's proxied artifact routes."""
    return f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"


def experiment(exp: Experiment) -> dict[str, Any]:
    exp_id = mlflow_experiment_id(exp)
    created = ms(exp.created_at)
    return {
        "experiment_id": exp_id,
        "name": exp.name,
        "artifact_location": f"mlflow-artifacts:/{exp_id}",
        "lifecycle_stage": "active",
        "creation_time": created,
        "last_update_time": created,
        "tags": key_values(exp.tags),
    }


def run_info(run: Run, experiment_id: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_id": run.id,
        "run_uuid": run.id,
        "experiment_id": experiment_id,
        "run_name": run.name,
        "user_id": run.created_by,
        "status": run.status,
        "start_time": ms(run.start_time),
        "artifact_uri": run_artifact_uri(experiment_id, run.id),
        "lifecycle_stage": "active",
    }
    if run.end_time is not None:
        info["end_time"] = ms(run.end_time)
    return info


def run(run: Run, experiment_id: str) -> dict[str, Any]:
    tags = dict(run.tags)
    # The run's name and notes, where MLflow keeps them (in tags) as well as in info.
    if run.name:
        tags[RUN_NAME_TAG] = run.name
    if run.notes:
        tags[NOTE_TAG] = run.notes
    if run.git_commit and GIT_COMMIT_TAG not in tags:
        tags[GIT_COMMIT_TAG] = run.git_commit
    metrics = [
        {"key": k, "value": number(s.latest), "timestamp": s.timestamp, "step": s.step}
        for k, s in run.metrics.items()
    ]
    return {
        "info": run_info(run, experiment_id),
        "data": {"metrics": metrics, "params": key_values(run.params), "tags": key_values(tags)},
        "inputs": {},
        "outputs": {},
    }


def metric_points(key: str, points: list[Point]) -> list[dict[str, Any]]:
    return [
        {"key": key, "value": number(p.value), "timestamp": p.timestamp, "step": p.step}
        for p in points
    ]
