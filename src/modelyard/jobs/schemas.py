"""Request and response types of the jobs domain.

Every field a client sends is constrained (pattern, range, length), so bad input is a 4xx
on every transport. Cross-field rules of the top-level requests are checked by the
service (the REST layer rebuilds top-level models field by field); nested models carry
their own validators.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from modelyard.compute.schemas import ModelArtifact as ModelArtifact
from modelyard.compute.schemas import OutputFile as OutputFile
from modelyard.compute.schemas import Resources as Resources
from modelyard.compute.schemas import ResourceUsage as ResourceUsage
from modelyard.core.names import BACKEND_URL as BACKEND_URL
from modelyard.core.names import DATASET_NAME, DIGEST_PATTERN, EXPERIMENT_NAME
from modelyard.core.names import JOB_ID as JOB_ID
from modelyard.core.names import JOB_NAME as JOB_NAME
from modelyard.core.schema import Schema
from modelyard.data.files import DatasetFile, StoredFile
from modelyard.errors import Conflict

if TYPE_CHECKING:
    from modelyard.jobs.workload import JobWorkload

CHANNEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
HYPERPARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,255}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
ALGORITHM_NAME = r"^[a-z][a-z0-9_]{0,63}$"
METRIC_NAME = r"^[A-Za-z0-9_.:/=+@-]{1,255}$"
ENTRY_POINT = r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,1023}$"
# A job kind's name (the registry, modelyard.jobs.kinds, says which exist) and a module the
# program of a kind runs with ``python -m``.
KIND_NAME = r"^[a-z][a-z0-9_]{0,19}$"
MODULE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,20}$"
# Free text that ends up in environment variables, argv or PostgreSQL text: no NUL byte.
NO_NUL = r"^[^\x00]*$"

# Which kinds exist is the registry's to say (modelyard.jobs.kinds: training, processing,
# transform…, and kinds other packages register), so the schema checks only the name's form
# and the service refuses an unknown one, naming the known ones (400 on every transport).
JobKind = Annotated[str, StringConstraints(pattern=KIND_NAME)]
JobState = Literal["Pending", "Starting", "Running", "Completed", "Failed", "Stopped"]
AttemptState = Literal["Starting", "Running", "Completed", "Failed", "Stopped"]
InputMode = Literal["File", "FastFile"]
S3Distribution = Literal["FullyReplicated", "ShardedByS3Key"]
LogStream = Literal["stdout", "stderr"]
MetricSource = Literal["regex", "sdk", "api"]

TERMINAL_STATES: frozenset[str] = frozenset({"Completed", "Failed", "Stopped"})
MAX_INT = 2**63 - 1

Text = Annotated[str, StringConstraints(max_length=10_000, pattern=NO_NUL)]
HyperparameterValue = (
    Annotated[bool, Field(strict=True)]
    | Annotated[int, Field(ge=-MAX_INT, le=MAX_INT, strict=True)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | Text
)
HyperparameterName = Annotated[str, StringConstraints(pattern=HYPERPARAMETER_NAME)]


def _check_regex(value: str) -> str:
    try:
        compiled = re.compile(value)
    except re.error as exc:
        raise ValueError(f"regex {value!r} does not compile: {exc}") from None
    if compiled.groups < 1:
        raise ValueError(f"regex {value!r} needs a capture group around the metric's value")
    return value


def _check_env_name(value: str) -> str:
    if value.upper().startswith(("SM_", "MODELYARD_")):
        raise ValueError(
            f"environment variable {value!r} is reserved: SM_* and MODELYARD_* are set by "
            "the container contract"
        )
    return value


EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME), AfterValidator(_check_env_name)]


class MetricDefinition(Schema):
    """A metric read from the job's log: the first capture group of ``regex`` is the value."""

    name: str = Field(pattern=METRIC_NAME)
    regex: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=NO_NUL)] = Field(
        description="Python regular expression with one capture group for the value."
    )

    @model_validator(mode="after")
    def _compiles(self) -> MetricDefinition:
        _check_regex(self.regex)
        return self


class RetryPolicy(Schema):
    max_attempts: int = Field(
        1,
        ge=1,
        le=20,
        description="Attempts in all. A failed attempt (non-zero exit, lost supervisor, "
        "launch error) is retried until this many have run; a stopped job or one that hit "
        "its max runtime is not.",
    )


class ChannelInput(Schema):
    """One input channel: a dataset version, one artifact, or an explicit list of files."""

    name: str = Field(pattern=CHANNEL_NAME)
    dataset: str | None = Field(None, pattern=DATASET_NAME)
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="Default: the latest.")
    artifact: str | None = Field(None, pattern=DIGEST_PATTERN)
    filename: str | None = Field(
        None, pattern=ENTRY_POINT, description="File name of an artifact input (default 'data')."
    )
    files: list[DatasetFile] | None = Field(None, min_length=1, max_length=100_000)
    mode: InputMode = Field(
        "File",
        description="File: copied (hard-linked from a local store) into input/data/<channel>/. "
        "FastFile: not copied; symlinks to the verified objects, or a manifest of object URLs "
        "when the artifact store is remote.",
    )
    content_type: str | None = Field(None, max_length=200, pattern=r"^[!-~]+$")
    distribution: S3Distribution = Field(
        "FullyReplicated",
        description="FullyReplicated: every host gets all files. ShardedByS3Key: with several "
        "hosts, each gets every n-th file by path (SageMaker's S3DistributionType).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ChannelInput:
        given = [k for k in ("dataset", "artifact", "files") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"channel {self.name!r} needs exactly one of dataset, artifact or files "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.version is not None and self.dataset is None:
            raise ValueError(f"channel {self.name!r}: version is only for a dataset input")
        if self.filename is not None and self.artifact is None:
            raise ValueError(f"channel {self.name!r}: filename is only for an artifact input")
        return self


class SubmitJob(Schema):
    """A job of a registered kind; for training and processing, user code (entry_point +
    uploaded source) or a built-in algorithm."""

    kind: JobKind = Field(
        "training", description="A registered job kind: 'training', 'processing'…"
    )
    name: str | None = Field(None, pattern=JOB_NAME, description="Display name (not unique).")
    experiment: str = Field(
        "jobs",
        pattern=EXPERIMENT_NAME,
        description="Experiment of the job's tracked run (created if it does not exist).",
    )
    entry_point: str | None = Field(
        None, pattern=ENTRY_POINT, description="Script in the source archive: *.py or *.sh."
    )
    source_digest: str | None = Field(
        None, pattern=DIGEST_PATTERN, description="Digest of the uploaded source .tar.gz."
    )
    algorithm: str | None = Field(
        None, pattern=ALGORITHM_NAME, description="A built-in algorithm instead of user code."
    )
    hyperparameters: dict[HyperparameterName, HyperparameterValue] = Field(
        default_factory=dict, max_length=500
    )
    arguments: list[Text] = Field(
        default_factory=list, max_length=1000, description="Extra command-line arguments."
    )
    environment: dict[EnvName, Text] = Field(default_factory=dict, max_length=200)
    inputs: list[ChannelInput] = Field(default_factory=list, max_length=50)
    resources: Resources = Field(default_factory=Resources)
    backend: str = Field("local", pattern=BACKEND_URL, description="'local', 'ray' or ray://…")
    max_runtime_s: int = Field(86_400, ge=1, le=28 * 86_400)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    metric_definitions: list[MetricDefinition] = Field(default_factory=list, max_length=40)


class ResolvedChannel(Schema):
    """A channel as the job will see it: exact files, whatever name the caller used."""

    name: str
    mode: InputMode
    content_type: str | None
    source: str = Field(description="'dataset:<name>:<version>', 'artifact:<digest>' or 'files'.")
    files: list[StoredFile]
    distribution: S3Distribution = "FullyReplicated"


class Program(Schema):
    """What an attempt runs: ``python -m <module>``, or ``script`` of the job's source
    (``*.py`` with Python, ``*.sh`` with ``/bin/sh``); the hyperparameters (``--name
    value``) and ``arguments`` follow either. The job's kind chooses it at submit."""

    module: str | None = Field(None, pattern=MODULE_NAME)
    script: str | None = Field(None, pattern=ENTRY_POINT)

    @model_validator(mode="after")
    def _one(self) -> Program:
        if (self.module is None) == (self.script is None):
            raise ValueError("a program is exactly one of module or script")
        return self


class JobSpec(Schema):
    """Everything needed to run (and re-run) the job; stored once at submit."""

    kind: JobKind
    entry_point: str | None
    source_digest: str | None
    algorithm: str | None
    requirements: bool = Field(description="The source has a requirements.txt at its root.")
    hyperparameters: dict[str, Any]
    arguments: list[str]
    environment: dict[str, str]
    inputs: list[ResolvedChannel]
    resources: Resources
    backend: str
    max_runtime_s: int
    retry: RetryPolicy
    metric_definitions: list[MetricDefinition]
    program: Program | None = Field(
        None,
        description="What the attempts run, chosen by the job's kind at submit (every stored "
        "job has one; where none is given, the algorithm's module or the entry point).",
    )

    def workload(self) -> JobWorkload:
        """What a compute backend runs for an attempt: the container contract."""
        from modelyard.jobs.workload import JobWorkload  # it imports this module

        return JobWorkload(self)

    def for_host(self, index: int, count: int) -> JobSpec:
        """The spec as host ``index`` of ``count`` runs it: its share of sharded inputs."""
        from modelyard.jobs.workload import host_inputs

        return self.model_copy(update={"inputs": host_inputs(self, index, count)})


class Attempt(Schema):
    number: int
    state: AttemptState
    backend: str
    backend_ref: dict[str, Any]
    exit_code: int | None
    signal: int | None
    failure_reason: str | None
    usage: ResourceUsage | None
    log_offsets: dict[str, int]
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None


class JobSummary(Schema):
    id: str
    name: str
    kind: JobKind
    state: JobState
    backend: str
    attempts: int
    created_at: dt.datetime
    created_by: str
    ended_at: dt.datetime | None


class Job(JobSummary):
    state_reason: str
    stop_requested: bool
    spec: JobSpec
    attempt_list: list[Attempt]
    model: ModelArtifact | None
    outputs: list[OutputFile]
    failure_reason: str | None
    final_metrics: dict[str, float]
    updated_at: dt.datetime
    started_at: dt.datetime | None
    run_id: str | None = Field(None, description="The run that tracks this job.")

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class GetJob(Schema):
    job_id: str = Field(pattern=JOB_ID)


class ListJobs(Schema):
    state: JobState | None = None
    kind: JobKind | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31 - 1)


class JobList(Schema):
    jobs: list[JobSummary]
    total: int


class GetLogs(Schema):
    job_id: str = Field(pattern=JOB_ID)
    attempt: int | None = Field(None, ge=1, le=1000, description="Only this attempt's lines.")
    after_seq: int = Field(0, ge=0, le=MAX_INT, description="Lines with a larger seq.")
    limit: int = Field(1000, ge=1, le=10_000)


class LogLine(Schema):
    seq: int = Field(description="Position in the job's log (1, 2, … across attempts).")
    attempt: int
    stream: LogStream
    time: dt.datetime = Field(description="When the control plane read the line (UTC).")
    text: str


class LogPage(Schema):
    lines: list[LogLine]
    next_after_seq: int = Field(description="Pass as after_seq to get the lines that follow.")
    state: JobState
    finished: bool = Field(description="The job has ended and every line has been returned.")


class GetMetrics(Schema):
    job_id: str = Field(pattern=JOB_ID)
    name: str | None = Field(None, pattern=METRIC_NAME, description="Only this metric.")
    limit: int = Field(10_000, ge=1, le=100_000, description="At most this many points.")


class MetricIn(Schema):
    name: str = Field(pattern=METRIC_NAME)
    value: float = Field(allow_inf_nan=False)
    step: int | None = Field(None, ge=0, le=MAX_INT)


class LogMetrics(Schema):
    job_id: str = Field(pattern=JOB_ID)
    metrics: list[MetricIn] = Field(min_length=1, max_length=1000)


class MetricPoint(MetricIn):
    attempt: int
    time: dt.datetime
    source: MetricSource


class JobMetrics(Schema):
    points: list[MetricPoint] = Field(description="In the order they were recorded.")
    latest: dict[str, float] = Field(description="The last value of each metric.")


class MetricsLogged(Schema):
    recorded: int


class JobFailed(Conflict):
    """A job the caller waited for ended Failed."""

    code = "job_failed"
