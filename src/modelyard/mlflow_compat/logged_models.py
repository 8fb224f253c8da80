"""MLflow 3's logged models, as folders of their source run.

``mlflow.<flavor>.log_model`` (and autologging) creates a logged model, uploads its
files to the model's ``artifact_uri``, then marks it READY. Here a logged model is the
folder ``<name>/`` of its source run's artifacts: its ``artifact_uri`` points into the
run, so the files are the run's output artifacts (readable with the modelyard SDK), and
its id is ``m-<run id>.<name>``. Its status lives in the run tag
``mlflow.loggedModel.<name>.status``. A model without a source run is not supported.
"""

from __future__ import annotations

import re
from typing import Any

from modelyard.mlflow_compat import entities, schemas
from modelyard.mlflow_compat.calls import Caller
from modelyard.mlflow_compat.errors import RESOURCE_DOES_NOT_EXIST, MlflowError, invalid
from modelyard.mlflow_compat.tracking import Handler
from modelyard.tracking.schemas import Run

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")
_PREFIX = "m-"


def _status_tag(name: str) -> str:
    return f"mlflow.loggedModel.{name}.status"


def model_id(run_id: str, name: str) -> str:
    return f"{_PREFIX}{run_id}.{name}"


def parse_model_id(model_id: str) -> tuple[str, str]:
    run_id, dot, name = model_id.removeprefix(_PREFIX).partition(".")
    if not model_id.startswith(_PREFIX) or not dot or not _NAME.fullmatch(name):
        raise MlflowError(RESOURCE_DOES_NOT_EXIST, f"logged model {model_id!r} does not exist")
    return run_id, name


def _model(call: Caller, run: Run, name: str) -> dict[str, Any]:
    status = run.tags.get(_status_tag(name))
    if status is None:
        raise MlflowError(
            RESOURCE_DOES_NOT_EXIST, f"logged model {model_id(run.id, name)!r} does not exist"
        )
    exp_id = call.experiment_id_of(run)
    created = entities.ms(run.start_time)
    return {
        "model": {
            "info": {
                "model_id": model_id(run.id, name),
                "experiment_id": exp_id,
                "name": name,
                "creation_timestamp_ms": created,
                "last_updated_timestamp_ms": created,
                "artifact_uri": f"{entities.run_artifact_uri(exp_id, run.id)}/{name}",
                "status": status,
                "model_type": "",
                "source_run_id": run.id,
                "tags": [],
            },
            "data": {"params": entities.key_values(run.params), "metrics": []},
        }
    }


def _set_status(call: Caller, run_id: str, name: str, status: str) -> None:
    call(
        "tracking.log_batch",
        run_id=run_id,
        tags=[{"key": _status_tag(name), "value": status}],
    )


def create_logged_model(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.CreateLoggedModel.model_validate(body)
    if not req.source_run_id:
        raise invalid(
            "a logged model needs a source run: log it inside mlflow.start_run() (models "
            "outside runs are not supported)"
        )
    name = req.name or "model"
    if not _NAME.fullmatch(name):
        raise invalid(f"model name {name!r} must match {_NAME.pattern}")
    run = call.run(req.source_run_id)
    exp_id = call.experiment_id_of(run)
    if req.experiment_id != exp_id:
        raise invalid(
            f"experiment_id {req.experiment_id!r} is not the experiment of run {run.id} "
            f"({exp_id!r})"
        )
    _set_status(call, run.id, name, "LOGGED_MODEL_PENDING")
    return _model(call, call.run(run.id), name)


def get_logged_model(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    run_id, name = parse_model_id(str(body["model_id"]))
    return _model(call, call.run(run_id), name)


def finalize_logged_model(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    run_id, name = parse_model_id(str(body["model_id"]))
    req = schemas.FinalizeLoggedModel.model_validate(body)
    if req.status not in _STATUSES:
        raise invalid(f"status {req.status!r} is not one of {', '.join(_STATUSES)}")
    run = call.run(run_id)
    _model(call, run, name)  # it must exist
    _set_status(call, run_id, name, req.status)
    return _model(call, call.run(run_id), name)


def search_logged_models(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Always an empty page.

    MLflow's client looks a run's logged models up by search when it lists or downloads
    ``runs:/<run id>/<name>``, and then lists the model's files next to the run's own.
    Here those are the same files (the model is a folder of its run), so finding the
    model would list each file twice; finding none lists each once.
    """
    schemas.SearchLoggedModels.model_validate(body)
    return {"models": []}


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "logged-models", create_logged_model),
    ("POST", "logged-models/search", search_logged_models),
    ("GET", "logged-models/{model_id}", get_logged_model),
    ("PATCH", "logged-models/{model_id}", finalize_logged_model),
]
