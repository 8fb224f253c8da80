"""MLflow's proxied artifact routes, onto a run's output artifacts.

A run's ``artifact_uri`` is ``mlflow-artifacts:/<experiment id>/<run id>/artifacts``, so
MLflow's client uploads, lists and downloads through
``/api/2.0/mlflow-artifacts/artifacts/<experiment id>/<run id>/artifacts/<path>``; each
call becomes ``tracking.log_artifact``, ``tracking.list_artifacts`` or
``tracking.download_artifact``. Other locations (experiment roots, MLflow's own model
folders) are not served: this server never hands them out.
"""

from __future__ import annotations

import posixpath
from typing import Any

from modelyard.core.operations import StreamResult
from modelyard.mlflow_compat import entities, schemas
from modelyard.mlflow_compat.calls import Caller
from modelyard.mlflow_compat.errors import RESOURCE_DOES_NOT_EXIST, MlflowError
from modelyard.tracking.schemas import RunArtifactList


def split_location(location: str) -> tuple[str, str, str]:
    """``<experiment id>/<run id>/artifacts[/<path>]`` -> (experiment id, run id, path)."""
    parts = location.strip("/").split("/", 3)
    if len(parts) < 3 or parts[2] != "artifacts" or not parts[0] or not parts[1]:
        raise MlflowError(
            RESOURCE_DOES_NOT_EXIST,
            f"artifact location {location!r} is not a run's: this server serves "
            "<experiment id>/<run id>/artifacts/<path>",
        )
    return parts[0], parts[1], parts[3] if len(parts) == 4 else ""


def check_run(call: Caller, experiment_id: str, run_id: str) -> None:
    """The run must exist and belong to the experiment the location names."""
    run = call.run(run_id)
    if call.experiment_id_of(run) != experiment_id:
        raise MlflowError(
            RESOURCE_DOES_NOT_EXIST,
            f"run {run_id} is not in experiment {experiment_id!r}",
        )


def upload(call: Caller, location: str, stream: Any) -> dict[str, Any]:
    _, run_id, path = split_location(location)
    call("tracking.log_artifact", run_id=run_id, path=path, stream=stream)
    return {}


def _files(listing: RunArtifactList, *, full: bool) -> list[dict[str, Any]]:
    files = []
    for a in listing.artifacts:
        entry: dict[str, Any] = {
            "path": a.path if full else posixpath.basename(a.path),
            "is_dir": a.is_dir,
        }
        if a.size is not None:
            entry["file_size"] = a.size
        files.append(entry)
    return files


def list_location(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """``GET /mlflow-artifacts/artifacts?path=...``: one folder, names relative to it."""
    exp_id, run_id, path = split_location(str(body.get("path") or ""))
    check_run(call, exp_id, run_id)
    listing: RunArtifactList = call("tracking.list_artifacts", run_id=run_id, path=path)
    return {"files": _files(listing, full=False)}


def list_run_artifacts(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """``GET /mlflow/artifacts/list?run_id=...&path=...``: paths relative to the run."""
    req = schemas.ListArtifacts.model_validate(body)
    run = call.run(req.run_id)
    exp_id = call.experiment_id_of(run)
    listing: RunArtifactList = call("tracking.list_artifacts", run_id=run.id, path=req.path or "")
    return {
        "root_uri": entities.run_artifact_uri(exp_id, run.id),
        "files": _files(listing, full=True),
    }


def download(call: Caller, location: str) -> StreamResult:
    exp_id, run_id, path = split_location(location)
    check_run(call, exp_id, run_id)
    # Served as an octet-stream attachment whatever its name (server/headers.py): a file
    # named evil.html must never be rendered as a page of this origin.
    result: StreamResult = call("tracking.download_artifact", run_id=run_id, path=path)
    return result
