"""Request and response types of the model registry."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field

from modelyard.core.names import JOB_ID as JOB_ID
from modelyard.core.names import MODEL_NAME as MODEL_NAME
from modelyard.core.names import VERSION_REF as VERSION_REF
from modelyard.core.schema import Schema

# Aliases start with a letter, so a version reference is a number or an alias, never both.
ALIAS = r"^[a-z][a-z0-9_-]{0,62}$"
DIGEST = r"^[0-9a-f]{64}$"
FLAVOR = r"^[a-z][a-z0-9_.-]{0,49}(:[a-z0-9][a-z0-9_.-]{0,48})?$"
RUN_ID = r"^[A-Za-z0-9_-]{1,40}$"
KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.\-/:]{0,249}$"
FILENAME = r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}$"
# A handler script inside its source folder: a relative path of safe components, .py.
ENTRY_POINT = r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}/){0,8}[A-Za-z0-9_][A-Za-z0-9_.-]{0,96}\.py$"
# Free text stored in PostgreSQL text or JSONB: no NUL character.
NO_NUL = r"^[^\x00]*$"
MAX_VERSION = 999_999_999
MAX_JSON_BYTES = 256 * 1024

# Special version reference: the highest version number of a group. It cannot be an alias.
LATEST = "latest"
# Alias that may only point at an Approved version.
PRODUCTION = "production"

Status = Literal["PendingManualApproval", "Approved", "Rejected"]
HistoryKind = Literal["registered", "status", "alias"]

Text = Annotated[str, Field(max_length=20_000, pattern=NO_NUL)]
TagKey = Annotated[str, Field(pattern=KEY)]
TagValue = Annotated[str, Field(max_length=5000, pattern=NO_NUL)]
MetricValue = Annotated[float, Field(allow_inf_nan=False)]


def _no_nul(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("nested more than 32 levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("strings may not contain the NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key, depth + 1)
            _no_nul(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _no_nul(item, depth + 1)


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    """Bounded JSON that both SQLite and PostgreSQL JSONB store unchanged."""
    _no_nul(value)
    try:
        encoded = json.dumps(value, allow_nan=False)
    except ValueError as exc:
        raise ValueError("numbers must be finite (no NaN or Infinity)") from exc
    if len(encoded) > MAX_JSON_BYTES:
        raise ValueError(f"at most {MAX_JSON_BYTES} bytes of JSON")
    return value


JSONObject = Annotated[dict[str, Any], AfterValidator(_storable_json)]


class TensorSpec(Schema):
    """One input or output of a model: a column of a table or a named tensor."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=KEY)
    type: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="Data type, e.g. float32, float64, int64, string, bool.",
    )
    shape: list[Annotated[int, Field(ge=-1, le=2**31 - 1)]] | None = Field(
        None, max_length=32, description="Dimensions; -1 for a variable size (batch)."
    )


class Signature(Schema):
    """What a model takes and returns; empty lists when unknown."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[TensorSpec] = Field(default_factory=list, max_length=10_000)
    outputs: list[TensorSpec] = Field(default_factory=list, max_length=10_000)


class ModelCard(Schema):
    """The model card: what the model is for, how it was evaluated, where it fails."""

    model_config = ConfigDict(extra="forbid")

    intended_use: Text = ""
    training_data: Text = ""
    evaluation: Text = ""
    limitations: Text = ""
    ethical_considerations: Text = ""
    other: dict[TagKey, Text] = Field(
        default_factory=dict, max_length=50, description="Further sections by title."
    )


# --- groups ----------------------------------------------------------------------------


class CreateModel(Schema):
    name: str = Field(pattern=MODEL_NAME)
    description: str = Field("", max_length=5000, pattern=NO_NUL)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=100)


class Model(Schema):
    """A model group: the numbered versions of one model, and its aliases."""

    id: str
    name: str
    description: str
    tags: dict[str, str]
    latest_version: int = Field(description="The highest version number (0: none yet).")
    aliases: dict[str, int] = Field(description="alias -> version number.")
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime


class GetModel(Schema):
    name: str = Field(pattern=MODEL_NAME)


class ListModels(Schema):
    prefix: str | None = Field(None, max_length=200, pattern=NO_NUL)
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31 - 1)


class ModelList(Schema):
    models: list[Model]
    total: int


# --- versions --------------------------------------------------------------------------


class RegisterVersion(Schema):
    name: str = Field(pattern=MODEL_NAME, description="The group; created if it does not exist.")
    artifact_digest: str = Field(
        pattern=DIGEST, description="SHA-256 of the model artifact, uploaded first."
    )
    artifact_filename: str = Field(
        "",
        # The whole alternation anchored: "^$|x$" would accept anything ending in x.
        pattern=r"^(?:|" + FILENAME[1:-1] + r")$",
        description="File name of a single-file artifact ('' for a .tar.gz of a folder).",
    )
    flavor: str | None = Field(
        None,
        pattern=FLAVOR,
        description="How to load it: sklearn, xgboost, onnx, python, builtin:xgboost... "
        "Taken from the content when it names one (a modelyard-model.json descriptor, a "
        "SageMaker code/inference.py handler: python, a built-in algorithm's metadata.json); "
        "a flavor that disagrees with the content is refused. Required otherwise.",
    )
    entry_point: str | None = Field(
        None,
        pattern=ENTRY_POINT,
        description="SageMaker's Model(entry_point=...): an inference handler (model_fn, "
        "input_fn, predict_fn, output_fn), a path inside the source_digest archive. The "
        "server packages the model with that folder as code/ (a new artifact; flavor python).",
    )
    source_digest: str | None = Field(
        None,
        pattern=DIGEST,
        description="A .tar.gz of the handler's folder (SageMaker's source_dir), uploaded "
        "first; required with entry_point.",
    )
    flavor_metadata: JSONObject = Field(default_factory=dict)
    signature: Signature = Field(default_factory=Signature)
    metrics: dict[TagKey, MetricValue] = Field(default_factory=dict, max_length=1000)
    card: ModelCard = Field(default_factory=ModelCard)
    source_run_id: str | None = Field(None, pattern=RUN_ID)
    source_job_id: str | None = Field(None, pattern=JOB_ID)
    description: str = Field("", max_length=5000, pattern=NO_NUL)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=100)


class ModelVersion(Schema):
    id: str
    name: str
    version: int
    artifact_digest: str
    artifact_size: int
    artifact_filename: str
    flavor: str
    runs_user_code: bool = Field(
        description="Loading it runs Python code that came with the model (flavor python: "
        "a handler module; pickle). Check that code before approving or deploying it."
    )
    flavor_metadata: dict[str, Any]
    signature: Signature
    metrics: dict[str, float]
    card: ModelCard
    source_run_id: str | None
    source_job_id: str | None
    description: str
    tags: dict[str, str]
    status: Status
    status_reason: str
    status_by: str | None
    status_at: dt.datetime | None
    aliases: list[str]
    created_at: dt.datetime
    created_by: str


class GetVersion(Schema):
    name: str = Field(pattern=MODEL_NAME)
    version: str = Field(
        pattern=VERSION_REF,
        description="A version number, an alias (e.g. production) or 'latest'.",
    )


class ListVersions(Schema):
    name: str = Field(pattern=MODEL_NAME)
    status: Status | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31 - 1)


class VersionList(Schema):
    """Versions newest first."""

    versions: list[ModelVersion]
    total: int


class ApproveVersion(Schema):
    name: str = Field(pattern=MODEL_NAME)
    version: int = Field(ge=1, le=MAX_VERSION)
    reason: str = Field("", max_length=5000, pattern=NO_NUL)


class RejectVersion(Schema):
    name: str = Field(pattern=MODEL_NAME)
    version: int = Field(ge=1, le=MAX_VERSION)
    reason: str = Field(
        min_length=1,
        max_length=5000,
        pattern=r"^[^\x00]*[^\x00\s][^\x00]*$",
        description="Required.",
    )


# --- aliases ---------------------------------------------------------------------------


class SetAlias(Schema):
    name: str = Field(pattern=MODEL_NAME)
    alias: str = Field(pattern=ALIAS)
    version: int = Field(ge=1, le=MAX_VERSION)


class DeleteAlias(Schema):
    name: str = Field(pattern=MODEL_NAME)
    alias: str = Field(pattern=ALIAS)


class Alias(Schema):
    name: str
    alias: str
    version: int = Field(description="The version it points at (before deletion, if deleted).")
    previous_version: int | None = Field(description="Where it pointed before (None: new).")
    updated_at: dt.datetime
    updated_by: str


# --- history ---------------------------------------------------------------------------


class GetHistory(Schema):
    name: str = Field(pattern=MODEL_NAME)
    version: int | None = Field(None, ge=1, le=MAX_VERSION, description="Only this version.")
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31 - 1)


class HistoryEntry(Schema):
    """One change. ``old``/``new`` are statuses, or version numbers for an alias."""

    seq: int
    name: str
    version: int | None
    kind: HistoryKind
    alias: str | None
    old: str | None
    new: str | None
    actor: str
    reason: str
    time: dt.datetime


class History(Schema):
    """Oldest first."""

    entries: list[HistoryEntry]
    total: int
