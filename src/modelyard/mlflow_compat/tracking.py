"""MLflow tracking endpoints (experiments, runs, params, metrics, tags, search).

Each handler takes the parsed request (query parameters for GET, the JSON body
otherwise) and a :class:`Caller`, and returns the MLflow response body.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from modelyard.errors import AlreadyExists, NotFound
from modelyard.mlflow_compat import entities, schemas
from modelyard.mlflow_compat.calls import Caller
from modelyard.mlflow_compat.errors import RESOURCE_ALREADY_EXISTS, MlflowError, invalid
from modelyard.mlflow_compat.search import (
    decode_page_token,
    encode_page_token,
    translate_filter,
    translate_order_by,
)
from modelyard.tracking.schemas import Experiment, ExperimentList, MetricHistory, Run, RunList

Handler = Callable[[Caller, dict[str, Any]], dict[str, Any]]
_RUN_STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")
_SEARCH_PAGE = 1000  # modelyard's largest page


# --- experiments -----------------------------------------------------------------------


def create_experiment(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.CreateExperiment.model_validate(body)
    if req.artifact_location:
        raise invalid(
            "artifact_location is not supported: modelyard stores every run's artifacts in "
            "its own content-addressed store"
        )
    tags = {t.key: t.value for t in req.tags}
    try:
        exp: Experiment = call("tracking.create_experiment", name=req.name, tags=tags)
    except AlreadyExists as exc:
        raise MlflowError(RESOURCE_ALREADY_EXISTS, exc.message) from None
    return {"experiment_id": entities.mlflow_experiment_id(exp)}


def get_experiment(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.ExperimentById.model_validate(body)
    return {"experiment": entities.experiment(call.experiment(req.experiment_id))}


def get_experiment_by_name(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.ExperimentByName.model_validate(body)
    if req.experiment_name == entities.DEFAULT_EXPERIMENT_NAME:
        return {"experiment": entities.experiment(call.default_experiment())}
    exp: Experiment = call("tracking.get_experiment", name=req.experiment_name)
    return {"experiment": entities.experiment(exp)}


def search_experiments(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Experiments by name; the filter may only be ``name = '...'`` or ``name LIKE 'x%'``."""
    req = schemas.SearchExperiments.model_validate(body)
    prefix: str | None = None
    exact: str | None = None
    text = (req.filter or "").strip()
    if text:
        m = re.fullmatch(r"(?:attribute\.|attributes\.)?name\s*(=|LIKE)\s*'([^'%_]*)(%?)'", text)
        if m is None or (m.group(1) == "=" and m.group(3)):
            raise invalid(
                f"experiment filter {text!r} is not supported: use name = '<name>' or "
                "name LIKE '<prefix>%'"
            )
        exact, prefix = (m.group(2), None) if m.group(1) == "=" else (None, m.group(2))
    if req.order_by:
        raise invalid("order_by is not supported for experiments: they are listed by name")
    offset = decode_page_token(req.page_token)
    limit = min(req.max_results, 1000)
    if exact is not None:
        try:
            found: list[Experiment] = [call("tracking.get_experiment", name=exact)]
        except NotFound:
            found = []
        return {"experiments": [entities.experiment(e) for e in found[offset:]]}
    page: ExperimentList = call(
        "tracking.list_experiments", prefix=prefix, limit=limit, offset=offset
    )
    out: dict[str, Any] = {"experiments": [entities.experiment(e) for e in page.experiments]}
    if offset + len(page.experiments) < page.total:
        out["next_page_token"] = encode_page_token(offset + len(page.experiments))
    return out


# --- runs ------------------------------------------------------------------------------


def create_run(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.CreateRun.model_validate(body)
    exp = call.experiment(req.experiment_id or entities.DEFAULT_EXPERIMENT_ID)
    tags = {t.key: t.value for t in req.tags}
    # MLflow's server names unnamed runs; so does this one (the client prints the name).
    name = req.run_name or tags.get(entities.RUN_NAME_TAG) or f"mlflow-{secrets.token_hex(4)}"
    run: Run = call(
        "tracking.start_run",
        experiment=exp.name,
        name=name,
        tags=[{"key": k, "value": v} for k, v in tags.items()],
    )
    return {"run": entities.run(run, entities.mlflow_experiment_id(exp))}


def get_run(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.RunRef.model_validate(body)
    run = call.run(req.run_id)
    return {"run": entities.run(run, call.experiment_id_of(run))}


def update_run(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """End a run (status FINISHED/FAILED/KILLED) and/or rename it."""
    req = schemas.UpdateRun.model_validate(body)
    run = call.run(req.run_id)
    if req.run_name and req.run_name != run.name:
        run = call("tracking.update_run", run_id=run.id, name=req.run_name)
    if req.status is not None and req.status not in _RUN_STATUSES:
        raise invalid(f"status {req.status!r} is not one of {', '.join(_RUN_STATUSES)}")
    if req.status is not None and req.status != "RUNNING" and req.status != run.status:
        run = call("tracking.end_run", run_id=run.id, status=req.status)
    elif req.status == "RUNNING" and run.status != "RUNNING":
        raise invalid(f"run {run.id} has ended ({run.status}); it cannot run again")
    return {"run_info": entities.run_info(run, call.experiment_id_of(run))}


def _batch(
    call: Caller,
    run_id: str,
    *,
    metrics: Sequence[schemas.Metric] = (),
    params: Sequence[schemas.KeyValue] = (),
    tags: Sequence[schemas.KeyValue] = (),
) -> dict[str, Any]:
    now = int(time.time() * 1000)
    # MLflow keeps the run's name and notes in these tags too; setting one renames the run
    # or replaces its notes, as MLflow's server does.
    values = {t.key: t.value for t in tags}
    if entities.RUN_NAME_TAG in values or entities.NOTE_TAG in values:
        call(
            "tracking.update_run",
            run_id=run_id,
            name=values.get(entities.RUN_NAME_TAG),
            notes=values.get(entities.NOTE_TAG),
        )
    call(
        "tracking.log_batch",
        run_id=run_id,
        metrics=[
            {
                "key": m.key,
                "value": m.value,
                "step": m.step,
                "timestamp": now if m.timestamp is None else m.timestamp,
            }
            for m in metrics
        ],
        params=[{"key": p.key, "value": p.value} for p in params],
        tags=[{"key": t.key, "value": t.value} for t in tags],
    )
    return {}


def log_metric(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.LogMetric.model_validate(body)
    metric = schemas.Metric(key=req.key, value=req.value, timestamp=req.timestamp, step=req.step)
    return _batch(call, req.run_id, metrics=[metric])


def log_param(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.LogParam.model_validate(body)
    return _batch(call, req.run_id, params=[schemas.KeyValue(key=req.key, value=req.value)])


def set_tag(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.SetTag.model_validate(body)
    return _batch(call, req.run_id, tags=[schemas.KeyValue(key=req.key, value=req.value)])


def log_batch(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.LogBatch.model_validate(body)
    return _batch(call, req.run_id, metrics=req.metrics, params=req.params, tags=req.tags)


def acknowledge_run(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """``log-inputs`` and ``outputs``: the run must exist; the links are not stored (MLflow
    datasets are not modelyard datasets, and a logged model is a folder of its run). The
    caller must still be one who may write to runs, as for any logging route."""
    call.require("tracking.log_batch")
    req = schemas.RunRef.model_validate(body)
    call.run(req.run_id)
    return {}


def search_runs(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.SearchRuns.model_validate(body)
    if len(req.experiment_ids) != 1:
        raise invalid(
            f"search runs in exactly one experiment (got {len(req.experiment_ids)} experiment_ids)"
        )
    exp = call.experiment(req.experiment_ids[0])
    offset = decode_page_token(req.page_token)
    limit = min(req.max_results, _SEARCH_PAGE)
    page: RunList = call(
        "tracking.search_runs",
        experiment=exp.name,
        filter=translate_filter(req.filter),
        order_by=translate_order_by(req.order_by),
        limit=limit,
        offset=offset,
    )
    exp_id = entities.mlflow_experiment_id(exp)
    out: dict[str, Any] = {"runs": [entities.run(r, exp_id) for r in page.runs]}
    if offset + len(page.runs) < page.total:
        out["next_page_token"] = encode_page_token(offset + len(page.runs))
    return out


def get_metric_history(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Every point of a metric, in step order, in one page."""
    req = schemas.GetMetricHistory.model_validate(body)
    history: MetricHistory = call(
        "tracking.get_metric_history", run_id=req.run_id, key=req.metric_key
    )
    return {"metrics": entities.metric_points(req.metric_key, history.points)}


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "experiments/create", create_experiment),
    ("GET", "experiments/get", get_experiment),
    ("GET", "experiments/get-by-name", get_experiment_by_name),
    ("POST", "experiments/search", search_experiments),
    ("GET", "experiments/search", search_experiments),
    ("POST", "runs/create", create_run),
    ("GET", "runs/get", get_run),
    ("POST", "runs/update", update_run),
    ("POST", "runs/log-metric", log_metric),
    ("POST", "runs/log-parameter", log_param),
    ("POST", "runs/set-tag", set_tag),
    ("POST", "runs/log-batch", log_batch),
    ("POST", "runs/log-inputs", acknowledge_run),
    ("POST", "runs/outputs", acknowledge_run),
    ("POST", "runs/search", search_runs),
    ("GET", "metrics/get-history", get_metric_history),
]

__all__ = ["ROUTES", "Handler"]
