"""Operations of the jobs domain.

A job is desired state: ``jobs.submit`` writes a Pending row with a :class:`JobSpec` that
pins everything the run depends on (the program its kind chose, the source snapshot's
digest, the exact files of every input channel), and the controller
(:mod:`modelyard.jobs.controller`, declared below as this domain's background service)
makes it happen. ``jobs.stop`` records the
wish to stop; the controller carries it out. Reads come from the tables the controller
keeps up to date: attempts, log lines with sequence numbers, metric points.

What a job of each kind runs, what its request must satisfy and what happens when it ends
is the kind's (:mod:`modelyard.jobs.kinds`); nothing here names a kind.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard.compute.backends import backend_class
from modelyard.core import lineage
from modelyard.core.db import utcnow
from modelyard.core.ids import new_id
from modelyard.core.operations import Context, OperationSet
from modelyard.core.paths import safe_relpath
from modelyard.data import service as data_service
from modelyard.data.schemas import GetDataset, GetVersion, StoredFile
from modelyard.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from modelyard.jobs.controller import announce_after_commit, make_controller
from modelyard.jobs.kinds import kind_for, make_finishers
from modelyard.jobs.ledger import end_job_run
from modelyard.jobs.schemas import (
    TERMINAL_STATES,
    Attempt,
    ChannelInput,
    GetJob,
    GetLogs,
    GetMetrics,
    Job,
    JobList,
    JobMetrics,
    JobSpec,
    JobSummary,
    ListJobs,
    LogLine,
    LogMetrics,
    LogPage,
    MetricPoint,
    MetricsLogged,
    ModelArtifact,
    OutputFile,
    ResolvedChannel,
    ResourceUsage,
    SubmitJob,
)
from modelyard.jobs.states import advance
from modelyard.jobs.store import AttemptRow, JobRow, LogLineRow, MetricRow
from modelyard.tracking import recording

ops = OperationSet("jobs")

# Long-running services of this domain, started by ``modelyard up`` (and by the embedded
# client on first use of jobs) through ``Runtime.start_background``: the controller, and
# the finishers of the kinds that declare one (modelyard.jobs.kinds).
background = (make_controller, make_finishers)

# -- submit ---------------------------------------------------------------------------------


def _stored(ctx: Context, path: str, digest: str) -> StoredFile:
    if not ctx.artifacts.exists(digest):
        raise InvalidInput(f"artifact {digest} for {path!r} was never uploaded")
    return StoredFile(path=safe_relpath(path), digest=digest, size=ctx.artifacts.stat(digest).size)


def _resolve(
    ctx: Context, channel: ChannelInput
) -> tuple[ResolvedChannel, recording.InputVersion | None]:
    """Pin a channel to exact files (a dataset's latest version is resolved now)."""
    used: recording.InputVersion | None = None
    if channel.dataset is not None:
        if not ctx.principal.can("datasets.read"):
            raise PermissionDenied(f"{ctx.principal.user!r} may not read datasets")
        version = channel.version
        if version is None:
            version = data_service.get_dataset(ctx, GetDataset(name=channel.dataset)).latest_version
        found = data_service.get_version(ctx, GetVersion(name=channel.dataset, version=version))
        files, source = found.files, f"dataset:{channel.dataset}:{version}"
        used = recording.InputVersion(found.id, channel.dataset, version, channel.name)
    else:
        if not ctx.principal.can("artifacts.read"):
            raise PermissionDenied(f"{ctx.principal.user!r} may not read artifacts")
        if channel.artifact is not None:
            files = [_stored(ctx, channel.filename or "data", channel.artifact)]
            source = f"artifact:{channel.artifact}"
        else:
            files = [_stored(ctx, f.path, f.digest) for f in channel.files or []]
            source = "files"
        paths = [f.path for f in files]
        if len(set(paths)) != len(paths):
            raise InvalidInput(f"channel {channel.name!r} names a file path twice")
    resolved = ResolvedChannel(
        name=channel.name,
        mode=channel.mode,
        content_type=channel.content_type,
        source=source,
        files=files,
        distribution=channel.distribution,
    )
    return resolved, used


@ops.operation("POST", "/jobs", permission="jobs.write")
def submit(ctx: Context, req: SubmitJob) -> Job:
    """Submit a training or processing job; it starts when the controller admits it."""
    kind = kind_for(req.kind)
    if kind.submit_hint is not None:  # its own domain submits it, after checks of its own
        raise InvalidInput(kind.submit_hint)
    return submit_job(ctx, req)


def submit_job(ctx: Context, req: SubmitJob) -> Job:
    """Submit any kind of job (other domains' operations call this after their checks)."""
    ctx.audit_target = "job:new"
    kind = kind_for(req.kind)
    names = [c.name.upper() for c in req.inputs]
    if len(set(names)) != len(names):
        raise InvalidInput("input channel names must be unique (case-insensitively)")
    hp_names = [n.upper() for n in req.hyperparameters]
    if len(set(hp_names)) != len(hp_names):
        raise InvalidInput("hyperparameter names must be unique (case-insensitively)")
    requirements = kind.validate(ctx, req)  # slow reads first, before the write lock
    backend = backend_class(req.backend)
    resolved = [_resolve(ctx, c) for c in req.inputs]
    inputs = [channel for channel, _ in resolved]
    used_versions = [used for _, used in resolved if used is not None]
    spec = JobSpec(
        kind=req.kind,
        entry_point=safe_relpath(req.entry_point) if req.entry_point else None,
        source_digest=req.source_digest,
        algorithm=req.algorithm,
        requirements=requirements,
        hyperparameters=dict(req.hyperparameters),
        arguments=list(req.arguments),
        environment=dict(req.environment),
        inputs=inputs,
        resources=req.resources,
        backend=req.backend,
        max_runtime_s=req.max_runtime_s,
        retry=req.retry,
        metric_definitions=req.metric_definitions,
    )
    spec = spec.model_copy(update={"program": kind.program(spec)})
    backend.validate(req.backend, spec)
    now = utcnow()
    job_id = new_id("job")
    row = JobRow(
        id=job_id,
        name=req.name or f"{req.kind}-{job_id[4:]}",
        kind=req.kind,
        state="Pending",
        state_reason="waiting for the controller",
        stop_requested=False,
        backend=req.backend,
        spec=spec.model_dump(mode="json"),
        attempt_count=0,
        log_seq=0,
        model=None,
        outputs=[],
        created_at=now,
        created_by=ctx.principal.user,
        updated_at=now,
    )
    session = ctx.session
    session.add(row)
    session.flush()
    _open_run(ctx, session, row, req, used_versions)
    ctx.audit_target = f"job:{job_id}"
    ctx.emit("job.submitted", {"job": job_id, "kind": req.kind, "backend": req.backend})
    announce_after_commit(session)
    return _job_out(session, row)


def _open_run(
    ctx: Context,
    session: Session,
    row: JobRow,
    req: SubmitJob,
    used_versions: list[recording.InputVersion],
) -> None:
    """The job's tracked run and its lineage: dataset versions and code -> job -> run."""
    actor = ctx.principal.user
    job_node = lineage.Node("job", row.id, f"job {row.name}")
    tags: dict[str, str] = {"modelyard.job.kind": req.kind}
    if req.algorithm:
        tags["modelyard.algorithm"] = req.algorithm
    run = recording.open_job_run(
        session,
        job_id=row.id,
        job_name=row.name,
        experiment=req.experiment,
        actor=actor,
        params=dict(req.hyperparameters),
        tags=tags,
        code_digest=req.source_digest,
    )
    recording.record_inputs(session, run, used_versions, actor=actor)
    for used in used_versions:
        lineage.record(
            session, used.node(), job_node, "input", actor=actor, attrs={"channel": used.context}
        )
    if req.source_digest:
        lineage.record(
            session,
            lineage.Node("artifact", req.source_digest, "source.tar.gz"),
            job_node,
            "code",
            actor=actor,
        )


# -- reads ----------------------------------------------------------------------------------


def _job_row(session: Session, job_id: str, *, lock: bool = False) -> JobRow:
    stmt = select(JobRow).where(JobRow.id == job_id)
    row = session.scalars(stmt.with_for_update() if lock else stmt).first()
    if row is None:
        raise NotFound(f"job {job_id!r} does not exist")
    return row


def _summary(row: JobRow) -> JobSummary:
    return JobSummary(
        id=row.id,
        name=row.name,
        kind=row.kind,
        state=row.state,
        backend=row.backend,
        attempts=row.attempt_count,
        created_at=row.created_at,
        created_by=row.created_by,
        ended_at=row.ended_at,
    )


def _attempt_out(row: AttemptRow) -> Attempt:
    return Attempt(
        number=row.number,
        state=row.state,
        backend=row.backend,
        backend_ref=row.backend_ref or {},
        exit_code=row.exit_code,
        signal=row.signal,
        failure_reason=row.failure_reason,
        usage=ResourceUsage.model_validate(row.usage) if row.usage else None,
        log_offsets=row.log_offsets or {},
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
    )


def _latest_metrics(session: Session, job_id: str) -> dict[str, float]:
    last = (
        select(func.max(MetricRow.id).label("id"))
        .where(MetricRow.job_id == job_id)
        .group_by(MetricRow.name)
        .subquery()
    )
    rows = session.execute(
        select(MetricRow.name, MetricRow.value).join(last, MetricRow.id == last.c.id)
    )
    return {name: value for name, value in rows}


def _job_out(session: Session, row: JobRow) -> Job:
    attempts = session.scalars(
        select(AttemptRow).where(AttemptRow.job_id == row.id).order_by(AttemptRow.number)
    )
    return Job(
        **_summary(row).model_dump(),
        state_reason=row.state_reason,
        stop_requested=row.stop_requested,
        spec=JobSpec.model_validate(row.spec),
        attempt_list=[_attempt_out(a) for a in attempts],
        model=ModelArtifact.model_validate(row.model) if row.model else None,
        outputs=[OutputFile.model_validate(o) for o in row.outputs or []],
        failure_reason=row.failure_reason,
        final_metrics=_latest_metrics(session, row.id),
        updated_at=row.updated_at,
        started_at=row.started_at,
        run_id=run.id if (run := recording.job_run(session, row.id)) is not None else None,
    )


@ops.operation("GET", "/jobs", permission="jobs.read")
def list_jobs(ctx: Context, req: ListJobs) -> JobList:
    """Jobs, newest first, optionally only those in one state or of one kind."""
    stmt = select(JobRow)
    if req.state is not None:
        stmt = stmt.where(JobRow.state == req.state)
    if req.kind is not None:
        stmt = stmt.where(JobRow.kind == kind_for(req.kind).name)
    total = ctx.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.session.scalars(
        stmt.order_by(JobRow.created_at.desc(), JobRow.id.desc())
        .offset(req.offset)
        .limit(req.limit)
    )
    return JobList(jobs=[_summary(r) for r in rows], total=total)


@ops.operation("GET", "/jobs/{job_id}", permission="jobs.read")
def describe(ctx: Context, req: GetJob) -> Job:
    """A job: its spec, state, attempts (exit, usage), model and output artifacts."""
    return _job_out(ctx.session, _job_row(ctx.session, req.job_id))


@ops.operation("GET", "/jobs/{job_id}/logs", permission="jobs.read")
def logs(ctx: Context, req: GetLogs) -> LogPage:
    """Log lines after ``after_seq``, in order; poll with ``next_after_seq`` to follow."""
    session = ctx.session
    # The state is read before the lines: a job is final only after its last lines are
    # stored, so "finished" never hides a line.
    job = _job_row(session, req.job_id)
    stmt = select(LogLineRow).where(LogLineRow.job_id == job.id, LogLineRow.seq > req.after_seq)
    if req.attempt is not None:
        stmt = stmt.where(LogLineRow.attempt == req.attempt)
    rows = list(session.scalars(stmt.order_by(LogLineRow.seq).limit(req.limit)))
    lines = [
        LogLine(seq=r.seq, attempt=r.attempt, stream=r.stream, time=r.time, text=r.text)
        for r in rows
    ]
    return LogPage(
        lines=lines,
        next_after_seq=lines[-1].seq if lines else req.after_seq,
        state=job.state,
        finished=job.state in TERMINAL_STATES and len(rows) < req.limit,
    )


@ops.operation("GET", "/jobs/{job_id}/metrics", permission="jobs.read")
def metrics(ctx: Context, req: GetMetrics) -> JobMetrics:
    """Metric points of a job (from log regexes, ``log_metric`` and the API), in order."""
    job = _job_row(ctx.session, req.job_id)
    stmt = select(MetricRow).where(MetricRow.job_id == job.id)
    if req.name is not None:
        stmt = stmt.where(MetricRow.name == req.name)
    rows = ctx.session.scalars(stmt.order_by(MetricRow.id).limit(req.limit))
    points = [
        MetricPoint(
            name=r.name,
            value=r.value,
            step=r.step,
            attempt=r.attempt,
            time=r.time,
            source=r.source,
        )
        for r in rows
    ]
    latest = _latest_metrics(ctx.session, job.id)
    if req.name is not None:
        latest = {k: v for k, v in latest.items() if k == req.name}
    return JobMetrics(points=points, latest=latest)


# -- changes --------------------------------------------------------------------------------


@ops.operation("POST", "/jobs/{job_id}/stop", permission="jobs.write")
def stop(ctx: Context, req: GetJob) -> Job:
    """Stop a job: a Pending one at once, a running one by its controller (SIGTERM, then
    SIGKILL after a grace period). Stopping a stopped job is a no-op."""
    ctx.audit_target = f"job:{req.job_id}"
    session = ctx.session
    job = _job_row(session, req.job_id, lock=True)
    if job.state in ("Completed", "Failed"):
        raise Conflict(f"job {job.id} already ended {job.state}; there is nothing to stop")
    if job.state == "Stopped" or job.stop_requested:
        return _job_out(session, job)
    now = utcnow()
    job.stop_requested = True
    job.updated_at = now
    job.state_reason = f"stop requested by {ctx.principal.user}"
    if job.state == "Pending":
        advance(job, "Stopped", what=f"job {job.id}")
        job.ended_at = now
        end_job_run(session, job, actor=ctx.principal.user)
    ctx.emit("job.stop_requested", {"job": job.id})
    announce_after_commit(session)
    return _job_out(session, job)


@ops.operation("POST", "/jobs/{job_id}/metrics", permission="jobs.write")
def log_metrics(ctx: Context, req: LogMetrics) -> MetricsLogged:
    """Record metric points for a running job's current attempt (the in-job API path)."""
    ctx.audit_target = f"job:{req.job_id}"
    job = _job_row(ctx.session, req.job_id, lock=True)
    if job.state not in ("Starting", "Running"):
        raise Conflict(f"job {job.id} is {job.state}; metrics are recorded while it runs")
    now = utcnow()
    ctx.session.add_all(
        MetricRow(
            job_id=job.id,
            attempt=job.attempt_count,
            name=m.name,
            value=m.value,
            step=m.step,
            time=now,
            source="api",
        )
        for m in req.metrics
    )
    recording.append_job_metrics(
        ctx.session, job.id, [(m.name, m.value, m.step, None) for m in req.metrics]
    )
    return MetricsLogged(recorded=len(req.metrics))
