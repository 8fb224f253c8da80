"""Operations of batch transform: a model version over a dataset version, as a job.

``transforms.create`` checks everything a client can get wrong before anything is
written — the model version exists, is not Rejected and is a saved model folder; the
input dataset version (or the files) exists; the filters name real columns — and then
submits a job of kind ``transform`` through the jobs domain, so the transform inherits
durability, retries, logs, resources and both backends. The job's hyperparameters hold
the :class:`~modelyard.transform.schemas.WorkerConfig`, so the job alone says what it
did; there is no table of its own.

Registering the output. When the job completes, ``transforms.finalize`` registers its
part files as a new version of the output dataset and records the lineage edge
``job -> dataset_version`` ("output"), in one transaction. It is idempotent (under a lock:
SQLite's write lock, a PostgreSQL advisory lock on the job), and it is called from two
places: the SDK and CLI right after the job ends (so the caller gets the version at
once), and the :class:`Finisher`, the finisher of the ``transform`` job kind declared at
the end of this module (a controller woken through the outbox when a transform job
completes, in any process on the database), that finalizes it (so a client that went
away loses nothing: the job's outputs are stored artifacts, and the finisher — after a
restart too, by its resync — registers them). A transform is ``finalized`` once that
edge exists, or the job ended without output.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text

from modelyard.core import lineage
from modelyard.core.operations import Context, OperationSet
from modelyard.data import service as data_service
from modelyard.data.schemas import DatasetFile, GetDataset, GetVersion
from modelyard.data.schemas import RegisterVersion as RegisterDatasetVersion
from modelyard.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from modelyard.jobs import service as jobs_service
from modelyard.jobs.kinds import (
    JobFinisher,
    Kind,
    check_no_user_code,
    module_program,
    register_kind,
)
from modelyard.jobs.schemas import (
    TERMINAL_STATES,
    ChannelInput,
    GetJob,
    Job,
    ListJobs,
    MetricDefinition,
    Resources,
    RetryPolicy,
    SubmitJob,
)
from modelyard.registry import service as registry_service
from modelyard.registry.schemas import GetVersion as GetModelVersion
from modelyard.transform.config import (
    DATA_CHANNEL,
    ERRORS_FILE,
    ERRORS_SHOWN,
    MODEL_CHANNEL,
    PARTS_DIR,
    PREDICTION,
    PROBABILITY_PREFIX,
    SUMMARY_FILE,
    WorkerConfig,
)
from modelyard.transform.schemas import (
    CreateTransform,
    GetTransform,
    ListTransforms,
    RecordError,
    Transform,
    TransformList,
)

ops = OperationSet("transforms")

# The job's progress lines (see modelyard.transform.worker) become job metrics.
_METRICS = [
    MetricDefinition(name="transform:rows", regex=r"^transform: (\d+)(?:/\d+)? rows"),
    MetricDefinition(name="transform:rows_per_s", regex=r"^transform: .* ([0-9.]+) rows/s"),
]


def _require(ctx: Context, *permissions: str) -> None:
    for permission in permissions:
        if not ctx.principal.can(permission):
            raise PermissionDenied(
                f"{ctx.principal.user!r} (role {ctx.principal.role}) may not run a batch "
                f"transform: it needs {permission!r}"
            )


def _is_gzip(ctx: Context, digest: str) -> bool:
    """Whether the stored object starts like a gzip file (it is verified when a job reads it)."""
    chunks = ctx.artifacts.iter_chunks(digest, 2)
    try:
        return next(chunks, b"")[:2] == b"\x1f\x8b"
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _check_filters(req: CreateTransform, columns: list[str] | None) -> None:
    """Refuse filters that name a column that cannot exist (columns: the input's, if known)."""
    for label, names in (("input_filter", req.input_filter), ("output_filter", req.output_filter)):
        if names is not None and len(set(names)) != len(names):
            raise InvalidInput(f"{label} names a column twice: {names}")
    if columns is not None and req.input_filter:
        unknown = [c for c in req.input_filter if c not in columns]
        if unknown:
            raise InvalidInput(
                f"input_filter column(s) {', '.join(map(repr, unknown))} are not in the input; "
                f"its columns: {', '.join(map(repr, columns))}",
                details={"unknown": unknown, "columns": columns},
            )
    if req.join_source == "Input" and columns is not None:
        clash = [c for c in columns if c == PREDICTION or c.startswith(PROBABILITY_PREFIX)]
        if clash:
            raise InvalidInput(
                f"join_source='Input' would overwrite input column(s) "
                f"{', '.join(map(repr, clash))} with the model's output; select other columns "
                "with input_filter and do not join, or rename them"
            )
    if req.output_filter:
        joined = set(columns or []) if req.join_source == "Input" else set()

        def produced(name: str) -> bool:
            return (
                name == PREDICTION
                or re.fullmatch(rf"{PREDICTION}_\d+", name) is not None
                or name.startswith(PROBABILITY_PREFIX)
            )

        unknown = [
            c
            for c in req.output_filter
            if not produced(c)
            and c not in joined
            and not (columns is None and req.join_source == "Input")
        ]
        if unknown:
            known = [*sorted(joined), PREDICTION]
            raise InvalidInput(
                f"output_filter column(s) {', '.join(map(repr, unknown))} are not in the result; "
                f"it has {', '.join(map(repr, known))}"
                + (", probability_<class>" if req.probabilities else "")
                + (
                    ""
                    if req.join_source == "Input"
                    else " (input columns need join_source='Input')"
                ),
                details={"unknown": unknown},
            )
        if not req.probabilities and any(
            c.startswith(PROBABILITY_PREFIX) for c in req.output_filter
        ):
            raise InvalidInput("output_filter selects probability columns: set probabilities=True")


@ops.operation("POST", "/transforms", permission="transforms.write")
def create(ctx: Context, req: CreateTransform) -> Transform:
    """Start a batch transform: a model version's predictions for every input record."""
    ctx.audit_target = "transform:new"
    _require(ctx, "models.read", "jobs.write")
    version = registry_service.get_version(
        ctx, GetModelVersion(name=req.model, version=req.version)
    )
    if version.status == "Rejected":
        raise Conflict(
            f"model {version.name!r} v{version.version} is Rejected ({version.status_reason}); "
            "a batch transform runs a version pending approval or Approved"
        )
    filename = version.artifact_filename
    if filename and not filename.endswith((".tar.gz", ".tgz")):
        raise InvalidInput(
            f"model {version.name!r} v{version.version} is the single file {filename!r}; a "
            "batch transform loads a saved model folder (register it with "
            "client.models.register(path=<folder from modelyard.flavors.save_model>))"
        )
    if not filename and not _is_gzip(ctx, version.artifact_digest):
        raise InvalidInput(
            f"model {version.name!r} v{version.version}'s artifact is not a .tar.gz of a saved "
            "model folder; a batch transform loads one with modelyard.flavors"
        )
    if (req.dataset is None) == (req.files is None):
        raise InvalidInput("give exactly one of dataset (a registered dataset) or files")
    if req.dataset_version is not None and req.dataset is None:
        raise InvalidInput("dataset_version is only for a dataset input")
    columns: list[str] | None = None
    csv_column_names: list[str] | None = None
    data_version = None
    if req.dataset is not None:
        _require(ctx, "datasets.read")
        number = req.dataset_version
        if number is None:
            number = data_service.get_dataset(ctx, GetDataset(name=req.dataset)).latest_version
        data_version = data_service.get_version(ctx, GetVersion(name=req.dataset, version=number))
        if req.content_type is not None and req.content_type != data_version.format:
            raise InvalidInput(
                f"content_type {req.content_type!r} does not match dataset {req.dataset!r} "
                f"v{number}, which is {data_version.format}"
            )
        fmt = data_version.format
        columns = [c.name for c in data_version.columns]
        if fmt == "csv" and not data_version.header:
            # Its files have no header row: the worker reads them with these names.
            csv_column_names = columns
        data_input = ChannelInput(name=DATA_CHANNEL, dataset=req.dataset, version=number)
    else:
        if req.content_type is None:
            raise InvalidInput("files need content_type: parquet, csv or jsonl")
        fmt = req.content_type
        data_input = ChannelInput(name=DATA_CHANNEL, files=req.files)
    split_type = req.split_type or ("Record" if fmt == "parquet" else "Line")
    if split_type == "Line" and fmt == "parquet":
        raise InvalidInput("split_type 'Line' is for CSV and JSONL; Parquet splits by Record")
    _check_filters(req, columns)
    output = req.output_dataset or f"{req.dataset or req.model}-predictions"
    if data_version is not None and output == req.dataset:
        raise InvalidInput(
            f"output_dataset {output!r} is the input dataset; write predictions to another one"
        )
    config = WorkerConfig(
        model=version.name,
        model_version=version.version,
        model_version_id=version.id,
        model_filename=filename or "model.tar.gz",
        dataset=req.dataset,
        dataset_version=data_version.version if data_version else None,
        dataset_version_id=data_version.id if data_version else None,
        format=fmt,
        split_type=split_type,
        batch_size=req.batch_size,
        max_concurrent=req.max_concurrent,
        workers=req.instance_count,
        join_source=req.join_source,
        input_filter=req.input_filter,
        output_filter=req.output_filter,
        probabilities=req.probabilities,
        accept=req.accept,
        on_error=req.on_error,
        max_errors=req.max_errors,
        output_dataset=output,
        csv_column_names=csv_column_names,
    )
    try:
        submit = SubmitJob(
            kind="transform",
            name=req.name or f"transform-{version.name}-v{version.version}"[:100],
            experiment=req.experiment,
            hyperparameters=config.to_hyperparameters(),
            inputs=[
                data_input,
                ChannelInput(
                    name=MODEL_CHANNEL,
                    artifact=version.artifact_digest,
                    filename=config.model_filename,
                ),
            ],
            resources=Resources(cpus=req.cpus, memory_mb=req.memory_mb),
            backend=req.backend,
            max_runtime_s=req.max_runtime_s,
            retry=RetryPolicy(max_attempts=req.max_attempts),
            metric_definitions=_METRICS,
        )
    except ValidationError as exc:  # e.g. filters too long to store as hyperparameters
        raise InvalidInput(f"the transform cannot be stored as a job: {exc}") from None
    job = jobs_service.submit_job(ctx, submit)
    lineage.record(
        ctx.session,
        lineage.Node("model_version", version.id, f"{version.name} v{version.version}"),
        lineage.Node("job", job.id, f"job {job.name}"),
        "model",
        actor=ctx.principal.user,
    )
    ctx.audit_target = f"transform:{job.id}"
    ctx.emit(
        "transform.submitted",
        {"job": job.id, "model": version.name, "version": version.version, "output": output},
    )
    return _transform_out(ctx, job)


# -- reads ----------------------------------------------------------------------------------


def _config(job: Job) -> WorkerConfig:
    return WorkerConfig.from_hyperparameters(dict(job.spec.hyperparameters))


def _output_edge(ctx: Context, job_id: str) -> lineage.LineageEdgeRow | None:
    edges = lineage.edges_of(ctx.session, "job", job_id, direction="downstream", relation="output")
    return next((e for e in edges if e.dst_type == "dataset_version"), None)


def _read_errors(ctx: Context, digest: str) -> list[RecordError]:
    found: list[RecordError] = []
    buffer = b""
    for chunk in ctx.artifacts.iter_chunks(digest):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                found.append(RecordError.model_validate(json.loads(line)))
            if len(found) >= ERRORS_SHOWN:
                return found
    if buffer.strip() and len(found) < ERRORS_SHOWN:
        found.append(RecordError.model_validate(json.loads(buffer)))
    return found


def _parts(job: Job) -> list[tuple[str, str]]:
    prefix = f"{PARTS_DIR}/"
    return sorted(
        (o.path[len(prefix) :], o.digest) for o in job.outputs if o.path.startswith(prefix)
    )


def _transform_out(ctx: Context, job: Job) -> Transform:
    config = _config(job)
    edge = _output_edge(ctx, job.id)
    outputs = {o.path: o.digest for o in job.outputs}
    summary: dict[str, Any] = {}
    if SUMMARY_FILE in outputs:
        summary = json.loads(ctx.artifacts.read_bytes(outputs[SUMMARY_FILE]))
    errors = _read_errors(ctx, outputs[ERRORS_FILE]) if ERRORS_FILE in outputs else []
    attrs = edge.attrs if edge is not None else {}
    finalized = job.state in TERMINAL_STATES and (
        edge is not None or job.state != "Completed" or not _parts(job)
    )
    return Transform(
        job_id=job.id,
        name=job.name,
        state=job.state,
        created_at=job.created_at,
        created_by=job.created_by,
        ended_at=job.ended_at,
        model=config.model,
        model_version=config.model_version,
        dataset=config.dataset,
        dataset_version=config.dataset_version,
        output_dataset=config.output_dataset,
        output_version=attrs.get("version"),
        output_version_id=edge.dst_id if edge is not None else None,
        finalized=finalized,
        rows_in=summary.get("rows_in"),
        rows_out=summary.get("rows_out"),
        error_count=summary.get("error_count"),
        errors=errors,
        failure_reason=job.failure_reason,
    )


def _transform_job(ctx: Context, job_id: str) -> Job:
    _require(ctx, "jobs.read")
    job = jobs_service.describe(ctx, GetJob(job_id=job_id))
    if job.kind != "transform":
        raise NotFound(f"job {job_id!r} is a {job.kind} job, not a batch transform")
    return job


@ops.operation("GET", "/transforms/{job_id}", permission="transforms.read")
def describe(ctx: Context, req: GetTransform) -> Transform:
    """A batch transform: its job's state, counts, failed records and output version."""
    return _transform_out(ctx, _transform_job(ctx, req.job_id))


@ops.operation("GET", "/transforms", permission="transforms.read")
def list_transforms(ctx: Context, req: ListTransforms) -> TransformList:
    """Batch transforms, newest first (optionally in one state)."""
    _require(ctx, "jobs.read")
    page = jobs_service.list_jobs(
        ctx, ListJobs(kind="transform", state=req.state, limit=req.limit, offset=req.offset)
    )
    found = [
        _transform_out(ctx, jobs_service.describe(ctx, GetJob(job_id=s.id))) for s in page.jobs
    ]
    return TransformList(transforms=found, total=page.total)


# -- finalize -------------------------------------------------------------------------------


def _lock_job(ctx: Context, job_id: str) -> None:
    """Serialise finalizers of one job: SQLite's write transaction already does; on
    PostgreSQL a transaction-scoped advisory lock keyed by the job id."""
    session = ctx.session
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"transform:{job_id}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


@ops.operation("POST", "/transforms/{job_id}/finalize", permission="transforms.write")
def finalize(ctx: Context, req: GetTransform) -> Transform:
    """Register a completed transform's output as a new dataset version (idempotent)."""
    ctx.audit_target = f"transform:{req.job_id}"
    _lock_job(ctx, req.job_id)
    job = _transform_job(ctx, req.job_id)
    parts = _parts(job)
    if job.state != "Completed" or not parts or _output_edge(ctx, job.id) is not None:
        return _transform_out(ctx, job)
    _require(ctx, "datasets.write")
    config = _config(job)
    source = f"{config.dataset} v{config.dataset_version}" if config.dataset else "uploaded files"
    registered = data_service.register_version(
        ctx,
        RegisterDatasetVersion(
            name=config.output_dataset,
            files=[DatasetFile(path=path, digest=digest) for path, digest in parts],
            format=config.accept,
            # The worker writes the header row itself: never guessed (names such as
            # "2019,2020" would read as a row of data).
            header=True if config.accept == "csv" else None,
            description=(
                f"Predictions of model {config.model} v{config.model_version} on {source} "
                f"(batch transform job {job.id})"
            ),
            profile=False,
        ),
    )
    lineage.record(
        ctx.session,
        lineage.Node("job", job.id, f"job {job.name}"),
        lineage.Node(
            "dataset_version", registered.id, f"{registered.dataset} v{registered.version}"
        ),
        "output",
        actor=ctx.principal.user,
        attrs={"dataset": registered.dataset, "version": registered.version},
    )
    ctx.audit_target = f"transform:{job.id}"
    ctx.emit(
        "transform.output_registered",
        {"job": job.id, "dataset": registered.dataset, "version": registered.version},
    )
    return _transform_out(ctx, job)


# -- the transform job kind ------------------------------------------------------------------

# The program a transform job runs: the built-in worker, never user code.
WORKER_MODULE = "modelyard.transform.worker"


class Finisher(JobFinisher):
    """The transform kind's finisher: registers a completed transform's output.

    A :class:`~modelyard.jobs.kinds.JobFinisher` (a controller on the kit, keyed by job id,
    woken through the outbox by ``job.completed`` of a transform job in any process, and
    resynced from completed transforms it has not finished): ``finish`` finalizes the
    transform unless something already did (the SDK right after the job, or ``transforms
    finalize``). It acts as ``system:transforms.finisher`` (role ``system``) with only the
    permissions below, so the audit log shows the controller, not a user. A client error
    (the output cannot be registered) is logged once and left: the outputs stay stored and
    ``transforms.finalize`` can be called again.
    """

    name = "transforms.finisher"
    kind = "transform"
    states = frozenset({"Completed"})  # a failed or stopped transform has nothing to register
    permissions = (
        "transforms.read",
        "transforms.write",
        "datasets.read",
        "datasets.write",
    )

    def finish(self, job: Job) -> None:
        if not self.call("transforms.describe", GetTransform(job_id=job.id)).finalized:
            self.call("transforms.finalize", GetTransform(job_id=job.id))


KIND = register_kind(
    Kind(
        "transform",
        program=module_program(WORKER_MODULE),
        validate=check_no_user_code("a transform job"),
        finisher=Finisher,
        submit_hint=(
            "a batch transform is submitted with POST /transforms (my.Transformer, "
            "'modelyard transform run'), which checks the model and the data first"
        ),
    )
)
