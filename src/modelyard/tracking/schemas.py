"""Request and response types of the tracking domain."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from modelyard.core.idempotency import Idempotent
from modelyard.core.names import DATASET_NAME, DIGEST_PATTERN
from modelyard.core.names import EXPERIMENT_NAME as EXPERIMENT_NAME
from modelyard.core.schema import Schema

RUN_ID = r"^[A-Za-z0-9_-]{1,40}$"
# Free text stored in PostgreSQL text or JSONB: no NUL character (PostgreSQL refuses it).
NO_NUL = r"^[^\x00]*$"
ENV_KEY = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]{1,200}$")]
ENV_VALUE = Annotated[str, StringConstraints(max_length=500, pattern=NO_NUL)]
RUN_NAME = r"^[A-Za-z0-9_.:/ -]{0,200}$"
# Metric, param and tag keys: no commas (lists of keys travel comma-separated), no quotes
# or spaces (keys appear unquoted in search filters; backquotes allow dots).
KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.\-/:]{0,249}$"
# Lists of up to 100 keys / run ids. The pattern checks the shape with unbounded
# repetitions and _items_at_most the counts and lengths: the bounded form
# ("{0,249}" inside "{0,99}") compiled to ~14 MB and ~60 ms at every import.
KEY_LIST = r"^[A-Za-z0-9_][A-Za-z0-9_.\-/:]*(?:,[A-Za-z0-9_][A-Za-z0-9_.\-/:]*)*$"
RUN_ID_LIST = r"^[A-Za-z0-9_-]+(?:,[A-Za-z0-9_-]+)*$"


def _items_at_most(what: str, count: int, length: int) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is None:
            return None
        items = value.split(",")
        if len(items) > count:
            raise ValueError(f"at most {count} {what} are accepted, not {len(items)}")
        for item in items:
            if len(item) > length:
                raise ValueError(f"{what[:-1]} {item[:40]!r}... is over {length} characters")
        return value

    return AfterValidator(check)


MAX_STEP = 2**53
MAX_TIMESTAMP_MS = 2**53
MAX_BATCH_POINTS = 10_000

TagKey = Annotated[str, Field(pattern=KEY)]
TagValue = Annotated[str, Field(max_length=5000, pattern=NO_NUL)]
RunStatus = Literal["RUNNING", "FINISHED", "FAILED", "KILLED"]
EndStatus = Literal["FINISHED", "FAILED", "KILLED"]

# Metric values may be NaN or ±infinity: JSON carries them as "NaN"/"Infinity" strings.
_FLOATS = ConfigDict(ser_json_inf_nan="strings")


def _float_to_json(value: float) -> float | str:
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return value


MetricValue = Annotated[
    float, PlainSerializer(_float_to_json, return_type=float | str, when_used="json")
]


class Tag(Schema):
    key: str = Field(pattern=KEY)
    value: str = Field("", max_length=5000, pattern=NO_NUL)


class Param(Schema):
    key: str = Field(pattern=KEY)
    value: str = Field(max_length=6000, pattern=NO_NUL)


class MetricPoint(Schema):
    model_config = _FLOATS

    key: str = Field(pattern=KEY)
    value: MetricValue
    step: int = Field(0, ge=-MAX_STEP, le=MAX_STEP)
    timestamp: int | None = Field(
        None, ge=0, le=MAX_TIMESTAMP_MS, description="Milliseconds since the epoch (now if unset)."
    )


MAX_BATCH_KEYS = 1000
MetricKey = Annotated[str, Field(pattern=KEY)]
KeyIndex = Annotated[int, Field(ge=0, lt=MAX_BATCH_KEYS)]
MetricStep = Annotated[int, Field(ge=-MAX_STEP, le=MAX_STEP)]
TimestampMs = Annotated[int, Field(ge=0, le=MAX_TIMESTAMP_MS)]


class MetricColumns(Schema):
    """Metric points as parallel columns: point ``i`` is ``keys[key_index[i]]`` with
    ``values[i]`` at ``steps[i]``, logged at ``timestamps[i]`` (ms since the epoch).

    The compact form the SDK sends: each column is validated by its element type (no
    model per point), and the columns must have the same length.
    """

    model_config = _FLOATS

    keys: list[MetricKey] = Field(min_length=1, max_length=MAX_BATCH_KEYS)
    key_index: list[KeyIndex] = Field(max_length=MAX_BATCH_POINTS)
    # Plain floats: the model's ser_json_inf_nan writes NaN/±inf as strings in Rust.
    values: list[float] = Field(max_length=MAX_BATCH_POINTS)
    steps: list[MetricStep] = Field(max_length=MAX_BATCH_POINTS)
    timestamps: list[TimestampMs] = Field(max_length=MAX_BATCH_POINTS)

    @model_validator(mode="after")
    def _aligned(self) -> MetricColumns:
        n = len(self.key_index)
        if not len(self.values) == len(self.steps) == len(self.timestamps) == n:
            raise ValueError(
                "key_index, values, steps and timestamps must have the same length, got "
                f"{n}, {len(self.values)}, {len(self.steps)}, {len(self.timestamps)}"
            )
        if n and max(self.key_index) >= len(self.keys):
            raise ValueError(
                f"key_index {max(self.key_index)} is out of range: {len(self.keys)} keys given"
            )
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("keys must be distinct")
        return self


class Point(Schema):
    """One point of a metric's history."""

    model_config = _FLOATS

    step: int
    timestamp: int
    value: MetricValue


class MetricSummary(Schema):
    """Kept up to date at every insert: the latest point (highest step, then time), min, max."""

    model_config = _FLOATS

    latest: MetricValue
    step: int
    timestamp: int
    min: MetricValue | None
    max: MetricValue | None
    count: int


# --- experiments -----------------------------------------------------------------------


class CreateExperiment(Schema):
    name: str = Field(pattern=EXPERIMENT_NAME)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=100)


class Experiment(Schema):
    id: str
    name: str
    tags: dict[str, str]
    created_at: dt.datetime
    created_by: str


class GetExperiment(Schema):
    name: str = Field(pattern=EXPERIMENT_NAME)


class ListExperiments(Schema):
    prefix: str | None = Field(None, max_length=200)
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31 - 1)


class ExperimentList(Schema):
    experiments: list[Experiment]
    total: int


# --- runs ------------------------------------------------------------------------------


class RunInput(Schema):
    """A dataset version the run reads; ``version`` None means the latest, pinned at start."""

    dataset: str = Field(pattern=DATASET_NAME)
    version: int | None = Field(None, ge=1)
    context: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,100}$", description="e.g. train")


class RunInputOut(Schema):
    dataset: str
    version: int
    version_id: str
    context: str


class StartRun(Schema):
    experiment: str = Field(pattern=EXPERIMENT_NAME, description="Created if it does not exist.")
    name: str = Field("", pattern=RUN_NAME)
    params: list[Param] = Field(default_factory=list, max_length=1000)
    tags: list[Tag] = Field(default_factory=list, max_length=1000)
    notes: str = Field("", max_length=100_000, pattern=NO_NUL, description="Free text (Markdown).")
    inputs: list[RunInput] = Field(default_factory=list, max_length=100)
    code_digest: str | None = Field(
        None, pattern=DIGEST_PATTERN, description="Digest of the code snapshot (uploaded)."
    )
    git_commit: str | None = Field(None, pattern=r"^[0-9a-f]{7,64}$")
    environment: dict[ENV_KEY, ENV_VALUE] = Field(
        default_factory=dict, max_length=2000, description="Package versions and platform."
    )


class UpdateRun(Schema):
    run_id: str = Field(pattern=RUN_ID)
    name: str | None = Field(None, pattern=RUN_NAME)
    notes: str | None = Field(None, max_length=100_000, pattern=NO_NUL)


class Run(Schema):
    model_config = _FLOATS

    id: str
    experiment: str
    name: str
    status: RunStatus
    start_time: dt.datetime
    end_time: dt.datetime | None
    created_by: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, MetricSummary]
    notes: str = ""
    job_id: str | None = None
    code_digest: str | None = None
    git_commit: str | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    inputs: list[RunInputOut] = Field(default_factory=list)


class GetRun(Schema):
    run_id: str = Field(pattern=RUN_ID)


class EndRun(Schema):
    run_id: str = Field(pattern=RUN_ID)
    status: EndStatus = "FINISHED"


class LogBatch(Idempotent):
    """A batch; with an ``idempotency_key`` a retried batch is written once."""

    run_id: str = Field(pattern=RUN_ID)
    params: list[Param] = Field(default_factory=list, max_length=1000)
    tags: list[Tag] = Field(default_factory=list, max_length=1000)
    metrics: list[MetricPoint] = Field(default_factory=list, max_length=MAX_BATCH_POINTS)
    points: MetricColumns | None = Field(
        None,
        description="More points in columns (the SDK's form); with metrics, at most "
        f"{MAX_BATCH_POINTS} in all.",
    )


class BatchLogged(Schema):
    run_id: str
    params: int
    tags: int
    metrics: int


class GetMetricHistory(Schema):
    run_id: str = Field(pattern=RUN_ID)
    key: str = Field(pattern=KEY)
    max_points: int | None = Field(
        None, ge=4, le=100_000, description="Downsample to at most this many points."
    )


class MetricHistory(Schema):
    model_config = _FLOATS

    run_id: str
    key: str
    total: int = Field(description="Points stored (before downsampling).")
    points: list[Point]


class SearchRuns(Schema):
    experiment: str | None = Field(None, pattern=EXPERIMENT_NAME)
    filter: str = Field(
        "",
        max_length=4000,
        description='e.g. metrics.auc > 0.9 and params.depth = "6" and tags.team = "x"',
    )
    order_by: str = Field(
        "", max_length=1000, description="e.g. 'metrics.auc desc, attributes.start_time'"
    )
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31 - 1)


class RunList(Schema):
    model_config = _FLOATS

    runs: list[Run]
    total: int


class CompareRuns(Schema):
    run_ids: Annotated[str, _items_at_most("run ids", 100, 40)] = Field(
        pattern=RUN_ID_LIST, max_length=100 * 41, description="Comma-separated run ids."
    )
    metrics: Annotated[str | None, _items_at_most("metric keys", 100, 250)] = Field(
        None,
        pattern=KEY_LIST,
        max_length=100 * 251,
        description="Comma-separated metric keys (all if unset).",
    )
    max_points: int = Field(200, ge=4, le=100_000)


class Comparison(Schema):
    model_config = _FLOATS

    runs: list[Run]
    param_keys: list[str]
    differing_params: list[str] = Field(description="Params whose values differ between runs.")
    histories: dict[str, dict[str, list[Point]]] = Field(
        description="metric key -> run id -> downsampled points."
    )


# --- run artifacts ---------------------------------------------------------------------

EXPERIMENT_ID = r"^[A-Za-z0-9_-]{1,40}$"
ARTIFACT_PATH_MAX = 1000


class GetExperimentById(Schema):
    experiment_id: str = Field(pattern=EXPERIMENT_ID)


class LogRunArtifact(Schema):
    run_id: str = Field(pattern=RUN_ID)
    path: str = Field(
        min_length=1,
        max_length=ARTIFACT_PATH_MAX,
        description="Where the file goes inside the run, '/'-separated (e.g. 'model/MLmodel').",
    )


class GetRunArtifact(Schema):
    run_id: str = Field(pattern=RUN_ID)
    path: str = Field(min_length=1, max_length=ARTIFACT_PATH_MAX)


class ListRunArtifacts(Schema):
    run_id: str = Field(pattern=RUN_ID)
    path: str = Field(
        "", max_length=ARTIFACT_PATH_MAX, description="Folder to list ('' for the run's root)."
    )


class RunArtifact(Schema):
    path: str = Field(description="Path inside the run.")
    is_dir: bool
    size: int | None = Field(description="Bytes (files only).")
    digest: str | None = Field(description="SHA-256 of the content (files only).")


class RunArtifactList(Schema):
    run_id: str
    path: str = Field(description="The folder listed ('' = the run's root).")
    artifacts: list[RunArtifact] = Field(
        description="Files and folders directly inside ``path``, by path."
    )


class ArchiveRunArtifacts(Schema):
    run_id: str = Field(pattern=RUN_ID)
    path: str = Field(min_length=1, max_length=ARTIFACT_PATH_MAX, description="A folder.")


class RunArchive(Schema):
    """A folder of a run's outputs packed as a deterministic .tar.gz in the artifact store."""

    run_id: str
    path: str
    digest: str = Field(description="SHA-256 of the archive (register it as a model).")
    size: int
    files: int
