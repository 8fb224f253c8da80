"""MLflow's model registry endpoints, onto modelyard's registry (``models.*`` operations).

A registered model is a modelyard model group; a model version is a registry version.
Creating a version from MLflow (``mlflow.register_model("runs:/<run>/model", name)``)
packs the run's folder into one archive (``tracking.archive_artifacts``) and registers
it with flavor ``mlflow``; the version's MLflow ``source`` stays the run's folder, which
is also the download location MLflow's client loads the model from. Versions start
PendingManualApproval as every modelyard version does (the tag ``modelyard.status``
shows it); MLflow's own ``status`` is READY, since registration is synchronous. The
``production`` alias needs an Approved version.
"""

from __future__ import annotations

import re
from typing import Any

from modelyard.errors import AlreadyExists
from modelyard.mlflow_compat import entities, schemas
from modelyard.mlflow_compat.calls import Caller
from modelyard.mlflow_compat.errors import RESOURCE_ALREADY_EXISTS, MlflowError, invalid
from modelyard.mlflow_compat.logged_models import parse_model_id
from modelyard.mlflow_compat.search import decode_page_token, encode_page_token
from modelyard.mlflow_compat.tracking import Handler
from modelyard.registry.schemas import Model, ModelList, ModelVersion, VersionList

FLAVOR = "mlflow"
STATUS_TAG = "modelyard.status"
_RUNS_URI = re.compile(r"^runs:/([A-Za-z0-9_-]{1,40})/(.+)$")
_PROXY_URI = re.compile(
    r"^mlflow-artifacts:/+([A-Za-z0-9_-]{1,40})/([A-Za-z0-9_-]{1,40})/artifacts/(.+)$"
)
_MODEL_URI = re.compile(r"^models:/(m-[^/]+)$")
# MLflow's client adds this clause to registry searches to leave prompts out; modelyard
# registers no prompts, so it holds for every model and is dropped.
_NOT_PROMPT = re.compile(
    r"(?:^|\s+AND\s+)tags?\.[`\"]?mlflow\.prompt\.is_prompt[`\"]?\s*!=\s*'true'\s*$",
    re.IGNORECASE,
)
_NAME_FILTER = re.compile(r"^\s*name\s*(=|LIKE|ILIKE)\s*'([^'%_]*)(%?)'\s*$", re.IGNORECASE)


def registered_model(model: Model) -> dict[str, Any]:
    return {
        "name": model.name,
        "creation_timestamp": entities.ms(model.created_at),
        "last_updated_timestamp": entities.ms(model.updated_at),
        "user_id": model.created_by,
        "description": model.description,
        "tags": entities.key_values(model.tags),
        "aliases": [{"alias": a, "version": str(v)} for a, v in sorted(model.aliases.items())],
    }


def model_version(version: ModelVersion) -> dict[str, Any]:
    source = version.flavor_metadata.get("mlflow_source")
    updated = version.status_at or version.created_at
    return {
        "name": version.name,
        "version": str(version.version),
        "creation_timestamp": entities.ms(version.created_at),
        "last_updated_timestamp": entities.ms(updated),
        "user_id": version.created_by,
        "current_stage": "None",
        "description": version.description,
        "source": source if isinstance(source, str) else "",
        "run_id": version.source_run_id or "",
        "status": "READY",
        "tags": entities.key_values({**version.tags, STATUS_TAG: version.status}),
        "aliases": sorted(version.aliases),
    }


def _name_filter(text: str | None) -> tuple[str | None, str | None]:
    """``(exact name, name prefix)`` from ``name = 'x'`` / ``name LIKE 'x%'`` (or none)."""
    text = _NOT_PROMPT.sub("", text or "")
    if not text.strip():
        return None, None
    m = _NAME_FILTER.fullmatch(text)
    if m is None or (m.group(1) == "=" and m.group(3)):
        raise invalid(
            f"filter {text!r} is not supported: use name = '<name>' or name LIKE '<prefix>%'"
        )
    if m.group(1) == "=":
        return m.group(2), None
    return None, m.group(2)


def _order(order_by: list[str] | str) -> None:
    if order_by:
        raise invalid("order_by is not supported here: models are listed by name")


def create_registered_model(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.CreateRegisteredModel.model_validate(body)
    try:
        model: Model = call(
            "models.create_model",
            name=req.name,
            description=req.description,
            tags={t.key: t.value for t in req.tags},
        )
    except AlreadyExists as exc:
        raise MlflowError(RESOURCE_ALREADY_EXISTS, exc.message) from None
    return {"registered_model": registered_model(model)}


def get_registered_model(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.RegisteredModelName.model_validate(body)
    model: Model = call("models.get_model", name=req.name)
    return {"registered_model": registered_model(model)}


def search_registered_models(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.SearchRegisteredModels.model_validate(body)
    _order(req.order_by)
    exact, prefix = _name_filter(req.filter)
    offset = decode_page_token(req.page_token)
    if exact is not None:
        prefix = exact
    page: ModelList = call(
        "models.list_models", prefix=prefix, limit=min(req.max_results, 1000), offset=offset
    )
    models = [m for m in page.models if exact is None or m.name == exact]
    out: dict[str, Any] = {"registered_models": [registered_model(m) for m in models]}
    if exact is None and offset + len(page.models) < page.total:
        out["next_page_token"] = encode_page_token(offset + len(page.models))
    return out


def _source_folder(call: Caller, req: schemas.CreateModelVersion) -> tuple[str, str, str]:
    """(run id, folder in the run, the folder's mlflow-artifacts URI) named by ``source``."""
    source = req.source
    if req.model_id and not _MODEL_URI.fullmatch(source):
        source = f"models:/{req.model_id}"
    if m := _RUNS_URI.fullmatch(source):
        run_id, path = m.group(1), m.group(2)
    elif m := _PROXY_URI.fullmatch(source):
        run_id, path = m.group(2), m.group(3)
    elif m := _MODEL_URI.fullmatch(source):
        run_id, path = parse_model_id(m.group(1))
    else:
        raise invalid(
            f"source {req.source!r} is not a run's folder: use runs:/<run id>/<path>, "
            "mlflow-artifacts:/<experiment id>/<run id>/artifacts/<path> or "
            "models:/<logged model id>"
        )
    path = path.strip("/")
    if req.run_id and req.run_id != run_id:
        raise invalid(f"run_id {req.run_id!r} is not the run of source {req.source!r}")
    run = call.run(run_id)
    uri = f"{entities.run_artifact_uri(call.experiment_id_of(run), run.id)}/{path}"
    return run.id, path, uri


def create_model_version(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.CreateModelVersion.model_validate(body)
    run_id, path, uri = _source_folder(call, req)
    archive = call("tracking.archive_artifacts", run_id=run_id, path=path)
    version: ModelVersion = call(
        "models.register_version",
        name=req.name,
        artifact_digest=archive.digest,
        flavor=FLAVOR,
        flavor_metadata={"mlflow_source": uri, "run_path": path},
        source_run_id=run_id,
        description=req.description,
        tags={t.key: t.value for t in req.tags},
    )
    return {"model_version": model_version(version)}


def _version_number(text: str) -> str:
    if not text.isdigit():
        raise invalid(f"version {text!r} is not a version number")
    return text


def get_model_version(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.ModelVersionRef.model_validate(body)
    version: ModelVersion = call(
        "models.get_version", name=req.name, version=_version_number(req.version)
    )
    return {"model_version": model_version(version)}


def get_download_uri(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.ModelVersionRef.model_validate(body)
    version: ModelVersion = call(
        "models.get_version", name=req.name, version=_version_number(req.version)
    )
    source = version.flavor_metadata.get("mlflow_source")
    if version.flavor != FLAVOR or not isinstance(source, str):
        raise invalid(
            f"version {version.version} of {version.name!r} was not registered through MLflow; "
            "download it with the modelyard SDK (client.models.download)"
        )
    return {"artifact_uri": source}


def search_model_versions(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Versions of one model: the filter must be ``name = '<name>'``."""
    req = schemas.SearchModelVersions.model_validate(body)
    _order(req.order_by)
    exact, _ = _name_filter(req.filter)
    if exact is None:
        raise invalid("search model versions of one model: filter name = '<name>'")
    offset = decode_page_token(req.page_token)
    page: VersionList = call(
        "models.list_versions", name=exact, limit=min(req.max_results, 1000), offset=offset
    )
    out: dict[str, Any] = {"model_versions": [model_version(v) for v in page.versions]}
    if offset + len(page.versions) < page.total:
        out["next_page_token"] = encode_page_token(offset + len(page.versions))
    return out


def set_alias(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.SetAlias.model_validate(body)
    call(
        "models.set_alias",
        name=req.name,
        alias=req.alias,
        version=int(_version_number(req.version)),
    )
    return {}


def delete_alias(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.AliasRef.model_validate(body)
    call("models.delete_alias", name=req.name, alias=req.alias)
    return {}


def get_version_by_alias(call: Caller, body: dict[str, Any]) -> dict[str, Any]:
    req = schemas.AliasRef.model_validate(body)
    if req.alias.isdigit() or req.alias == "latest":
        raise invalid(f"{req.alias!r} is not an alias")
    version: ModelVersion = call("models.get_version", name=req.name, version=req.alias)
    return {"model_version": model_version(version)}


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "registered-models/create", create_registered_model),
    ("GET", "registered-models/get", get_registered_model),
    ("GET", "registered-models/search", search_registered_models),
    ("POST", "model-versions/create", create_model_version),
    ("GET", "model-versions/get", get_model_version),
    ("GET", "model-versions/get-download-uri", get_download_uri),
    ("GET", "model-versions/search", search_model_versions),
    ("POST", "registered-models/alias", set_alias),
    ("DELETE", "registered-models/alias", delete_alias),
    ("GET", "registered-models/alias", get_version_by_alias),
]
