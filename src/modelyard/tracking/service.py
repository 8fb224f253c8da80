"""Operations of the tracking domain: experiments, runs, batched metric ingestion, search.

``log_batch`` validates everything first (the request model, the run's state, params
that would change), then inserts all metric points in one ``executemany`` statement and
updates the per-key summaries in the same transaction: a batch is written whole or not
at all, and once acknowledged it is durable.
"""

from __future__ import annotations

import math
import posixpath
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from modelyard.artifacts.streams import object_stream
from modelyard.compute.archive import write_tar_gz
from modelyard.core import lineage
from modelyard.core.db import utcnow
from modelyard.core.ids import new_id
from modelyard.core.operations import Context, OperationSet, StreamResult
from modelyard.core.paths import safe_relpath
from modelyard.data import service as data_service
from modelyard.data.schemas import GetDataset, GetVersion
from modelyard.errors import AlreadyExists, Conflict, InvalidInput, NotFound, PermissionDenied
from modelyard.tracking import metrics, query, recording
from modelyard.tracking.schemas import (
    MAX_BATCH_POINTS,
    ArchiveRunArtifacts,
    BatchLogged,
    CompareRuns,
    Comparison,
    CreateExperiment,
    EndRun,
    Experiment,
    ExperimentList,
    GetExperiment,
    GetExperimentById,
    GetMetricHistory,
    GetRun,
    GetRunArtifact,
    ListExperiments,
    ListRunArtifacts,
    LogBatch,
    LogRunArtifact,
    MetricHistory,
    MetricPoint,
    MetricSummary,
    Param,
    Run,
    RunArchive,
    RunArtifact,
    RunArtifactList,
    RunInput,
    RunInputOut,
    RunList,
    SearchRuns,
    StartRun,
    Tag,
    UpdateRun,
)
from modelyard.tracking.store import (
    ExperimentRow,
    MetricSummaryRow,
    ParamRow,
    RunArtifactRow,
    RunInputRow,
    RunRow,
    TagRow,
)

ops = OperationSet("tracking")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _experiment_out(row: ExperimentRow) -> Experiment:
    return Experiment(
        id=row.id,
        name=row.name,
        tags=dict(row.tags or {}),
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _experiment_row(session: Session, name: str) -> ExperimentRow:
    row = session.scalars(select(ExperimentRow).where(ExperimentRow.name == name)).first()
    if row is None:
        raise NotFound(f"experiment {name!r} does not exist")
    return row


def _run_row(session: Session, run_id: str, *, lock: bool = False) -> RunRow:
    stmt = select(RunRow).where(RunRow.id == run_id)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    if row is None:
        raise NotFound(f"run {run_id!r} does not exist")
    return row


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _runs_out(session: Session, rows: Sequence[RunRow]) -> list[Run]:
    """Runs with their params, tags and metric summaries (three queries for all runs)."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    names = dict(
        session.execute(
            select(ExperimentRow.id, ExperimentRow.name).where(
                ExperimentRow.id.in_({r.experiment_id for r in rows})
            )
        )
        .tuples()
        .all()
    )
    params: dict[str, dict[str, str]] = {i: {} for i in ids}
    for run_id, key, value in session.execute(
        select(ParamRow.run_id, ParamRow.key, ParamRow.value).where(ParamRow.run_id.in_(ids))
    ).tuples():
        params[run_id][key] = value
    tags: dict[str, dict[str, str]] = {i: {} for i in ids}
    for run_id, key, value in session.execute(
        select(TagRow.run_id, TagRow.key, TagRow.value).where(TagRow.run_id.in_(ids))
    ).tuples():
        tags[run_id][key] = value
    metrics: dict[str, dict[str, MetricSummary]] = {i: {} for i in ids}
    summaries = MetricSummaryRow.__table__.c  # plain rows: a page holds many summaries
    for run_id, key, latest, step, timestamp, low, high, count in session.execute(
        select(
            summaries.run_id,
            summaries.key,
            summaries.latest,
            summaries.step,
            summaries.timestamp,
            summaries.min,
            summaries.max,
            summaries.count,
        ).where(summaries.run_id.in_(ids))
    ):
        metrics[run_id][key] = MetricSummary(
            latest=_none_to_nan(latest),
            step=step,
            timestamp=timestamp,
            min=low,
            max=high,
            count=count,
        )
    inputs: dict[str, list[RunInputOut]] = {}
    for row in session.scalars(
        select(RunInputRow)
        .where(RunInputRow.run_id.in_(ids))
        .order_by(RunInputRow.dataset, RunInputRow.version)
    ):
        inputs.setdefault(row.run_id, []).append(
            RunInputOut(
                dataset=row.dataset,
                version=row.version,
                version_id=row.dataset_version_id,
                context=row.context,
            )
        )
    return [
        Run(
            id=r.id,
            experiment=names.get(r.experiment_id, ""),
            name=r.name,
            status=r.status,
            start_time=r.start_time,
            end_time=r.end_time,
            created_by=r.created_by,
            params=dict(sorted(params[r.id].items())),
            tags=dict(sorted(tags[r.id].items())),
            metrics=dict(sorted(metrics[r.id].items())),
            notes=r.notes,
            job_id=r.job_id,
            code_digest=r.code_digest,
            git_commit=r.git_commit,
            environment=dict(r.environment or {}),
            inputs=inputs.get(r.id, []),
        )
        for r in rows
    ]


# --- experiments -----------------------------------------------------------------------


def _create_experiment(
    session: Session, name: str, tags: dict[str, str], user: str
) -> ExperimentRow:
    row = ExperimentRow(
        id=new_id("exp"), name=name, tags=tags, created_by=user, created_at=utcnow()
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"experiment {name!r} already exists") from exc
    return row


@ops.operation("POST", "/experiments", permission="tracking.write")
def create_experiment(ctx: Context, req: CreateExperiment) -> Experiment:
    """Create an experiment (names are unique)."""
    ctx.audit_target = f"experiment:{req.name}"
    session = ctx.session
    if session.scalars(select(ExperimentRow.id).where(ExperimentRow.name == req.name)).first():
        raise AlreadyExists(f"experiment {req.name!r} already exists")
    row = _create_experiment(session, req.name, dict(req.tags), ctx.principal.user)
    ctx.emit("tracking.experiment_created", {"name": req.name})
    return _experiment_out(row)


@ops.operation("GET", "/experiments", permission="tracking.read")
def list_experiments(ctx: Context, req: ListExperiments) -> ExperimentList:
    """List experiments by name."""
    session = ctx.session
    where = []
    if req.prefix:
        where.append(ExperimentRow.name.like(_escape_like(req.prefix) + "%", escape="\\"))
    total = session.scalar(select(func.count()).select_from(ExperimentRow).where(*where)) or 0
    rows = session.scalars(
        select(ExperimentRow)
        .where(*where)
        .order_by(ExperimentRow.name)
        .limit(req.limit)
        .offset(req.offset)
    ).all()
    return ExperimentList(experiments=[_experiment_out(r) for r in rows], total=total)


@ops.operation("GET", "/experiments/{name}", permission="tracking.read")
def get_experiment(ctx: Context, req: GetExperiment) -> Experiment:
    """Describe an experiment."""
    return _experiment_out(_experiment_row(ctx.session, req.name))


# --- runs ------------------------------------------------------------------------------


def _check_unique(items: Iterable[Param | Tag], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if item.key in out and out[item.key] != item.value:
            raise InvalidInput(f"{what} {item.key!r} appears twice with different values")
        out[item.key] = item.value
    return out


@ops.operation("POST", "/runs", permission="tracking.write")
def start_run(ctx: Context, req: StartRun) -> Run:
    """Start a run in an experiment (the experiment is created if it does not exist)."""
    params = _check_unique(req.params, "param")
    tags = _check_unique(req.tags, "tag")
    if req.code_digest and not ctx.artifacts.exists(req.code_digest):
        raise InvalidInput(f"code snapshot {req.code_digest} was never uploaded")
    used = [_input_version(ctx, item) for item in req.inputs]
    session = ctx.session
    experiment = session.scalars(
        select(ExperimentRow).where(ExperimentRow.name == req.experiment)
    ).first()
    if experiment is None:
        try:
            experiment = _create_experiment(session, req.experiment, {}, ctx.principal.user)
        except AlreadyExists:  # created concurrently
            experiment = _experiment_row(session, req.experiment)
    run = RunRow(
        id=new_id("run"),
        experiment_id=experiment.id,
        name=req.name,
        status="RUNNING",
        start_time=utcnow(),
        end_time=None,
        created_by=ctx.principal.user,
        notes=req.notes,
        job_id=None,
        code_digest=req.code_digest,
        git_commit=req.git_commit,
        environment=dict(req.environment),
    )
    session.add(run)
    session.flush()
    recording.record_inputs(session, run, used, actor=ctx.principal.user)
    if req.code_digest:
        lineage.record(
            session,
            lineage.Node("artifact", req.code_digest, "code.tar.gz"),
            recording.run_node(run),
            "code",
            actor=ctx.principal.user,
        )
    if params:
        session.execute(
            insert(ParamRow), [{"run_id": run.id, "key": k, "value": v} for k, v in params.items()]
        )
    if tags:
        session.execute(
            insert(TagRow), [{"run_id": run.id, "key": k, "value": v} for k, v in tags.items()]
        )
    ctx.audit_target = f"run:{run.id}"
    ctx.emit("tracking.run_started", {"run_id": run.id, "experiment": req.experiment})
    return _runs_out(session, [run])[0]


def _input_version(ctx: Context, item: RunInput) -> recording.InputVersion:
    """Pin a run input to an exact dataset version (the latest when none is given)."""
    if not ctx.principal.can("datasets.read"):
        raise PermissionDenied(f"{ctx.principal.user!r} may not read datasets")
    version = item.version
    if version is None:
        version = data_service.get_dataset(ctx, GetDataset(name=item.dataset)).latest_version
    found = data_service.get_version(ctx, GetVersion(name=item.dataset, version=version))
    return recording.InputVersion(found.id, item.dataset, version, item.context)


@ops.operation("PATCH", "/runs/{run_id}", permission="tracking.write")
def update_run(ctx: Context, req: UpdateRun) -> Run:
    """Rename a run or replace its notes (allowed after it ended: notes are commentary)."""
    ctx.audit_target = f"run:{req.run_id}"
    session = ctx.session
    run = _run_row(session, req.run_id, lock=True)
    if req.name is not None:
        run.name = req.name
    if req.notes is not None:
        run.notes = req.notes
    session.flush()
    return _runs_out(session, [run])[0]


@ops.operation("GET", "/runs/{run_id}", permission="tracking.read")
def get_run(ctx: Context, req: GetRun) -> Run:
    """Describe a run: params, tags, and each metric's latest value, min and max."""
    session = ctx.session
    return _runs_out(session, [_run_row(session, req.run_id)])[0]


@ops.operation("POST", "/runs/{run_id}/end", permission="tracking.write")
def end_run(ctx: Context, req: EndRun) -> Run:
    """End a run with a final status (repeating the same status is a no-op)."""
    ctx.audit_target = f"run:{req.run_id}"
    session = ctx.session
    run = _run_row(session, req.run_id, lock=True)
    if run.status != "RUNNING":
        if run.status == req.status:
            return _runs_out(session, [run])[0]
        raise Conflict(f"run {run.id} already ended as {run.status}")
    run.status = req.status
    run.end_time = utcnow()
    session.flush()
    ctx.emit("tracking.run_ended", {"run_id": run.id, "status": req.status})
    return _runs_out(session, [run])[0]


Columns = tuple[list[str], list[int], list[float], list[int], list[int]]


def _columns(req: LogBatch) -> Columns:
    """Both forms of a batch's points as (keys, key_index, values, steps, timestamps)."""
    given = len(req.metrics) + (len(req.points.key_index) if req.points else 0)
    if given > MAX_BATCH_POINTS:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH_POINTS} metric points, got {given}")
    if req.points is not None:
        p = req.points
        keys, key_index = list(p.keys), list(p.key_index)
        values, steps, timestamps = list(p.values), list(p.steps), list(p.timestamps)
    else:
        keys, key_index, values, steps, timestamps = [], [], [], [], []
    if req.metrics:
        now_ms = int(time.time() * 1000)
        index = {k: i for i, k in enumerate(keys)}
        for m in req.metrics:
            key_index.append(index.setdefault(m.key, len(index)))
            values.append(m.value)
            steps.append(m.step)
            timestamps.append(now_ms if m.timestamp is None else m.timestamp)
        keys = list(index)
    return keys, key_index, values, steps, timestamps


@ops.operation("POST", "/runs/{run_id}/batch", permission="tracking.write")
def log_batch(ctx: Context, req: LogBatch) -> BatchLogged:
    """Log params, tags and up to 10,000 metric points to a running run, all or nothing."""
    ctx.audit_target = f"run:{req.run_id}"
    params = _check_unique(req.params, "param")
    tags = _check_unique(req.tags, "tag")
    columns = _columns(req)
    session = ctx.session
    run = _run_row(session, req.run_id, lock=True)  # serialises batches of one run
    if run.status != "RUNNING":
        raise Conflict(f"run {run.id} is {run.status}; only a RUNNING run accepts data")
    new_params = {}
    if params:
        stored = dict(
            session.execute(
                select(ParamRow.key, ParamRow.value).where(
                    ParamRow.run_id == run.id, ParamRow.key.in_(list(params))
                )
            )
            .tuples()
            .all()
        )
        for key, value in params.items():
            if key in stored and stored[key] != value:
                raise Conflict(
                    f"param {key!r} of run {run.id} is already {stored[key]!r}; "
                    f"params cannot change (got {value!r})"
                )
        new_params = {k: v for k, v in params.items() if k not in stored}
    # Everything is valid: write.
    if new_params:
        session.execute(
            insert(ParamRow),
            [{"run_id": run.id, "key": k, "value": v} for k, v in new_params.items()],
        )
    if tags:
        stored_tags = set(
            session.scalars(
                select(TagRow.key).where(TagRow.run_id == run.id, TagRow.key.in_(list(tags)))
            )
        )
        for key in stored_tags:
            session.execute(
                update(TagRow)
                .where(TagRow.run_id == run.id, TagRow.key == key)
                .values(value=tags[key])
            )
        fresh = [
            {"run_id": run.id, "key": k, "value": v}
            for k, v in tags.items()
            if k not in stored_tags
        ]
        if fresh:
            session.execute(insert(TagRow), fresh)
    metrics.insert_points(session, run.id, *columns)
    return BatchLogged(run_id=run.id, params=len(params), tags=len(tags), metrics=len(columns[1]))


@ops.operation("GET", "/runs/{run_id}/metric-history", permission="tracking.read")
def get_metric_history(ctx: Context, req: GetMetricHistory) -> MetricHistory:
    """A metric's points in step order, optionally downsampled to ``max_points``."""
    session = ctx.session
    _run_row(session, req.run_id)
    total, points = metrics.history(session, req.run_id, req.key, req.max_points)
    return MetricHistory(run_id=req.run_id, key=req.key, total=total, points=points)


@ops.operation("GET", "/runs", permission="tracking.read")
def search_runs(ctx: Context, req: SearchRuns) -> RunList:
    """Search runs with a filter (metrics/params/tags/attributes), sorted and paged."""
    condition = query.filter_condition(req.filter)
    order = query.order_terms(req.order_by)
    lead = query.leading_metric(req.order_by)
    session = ctx.session
    where = []
    if req.experiment is not None:
        where.append(RunRow.experiment_id == _experiment_row(session, req.experiment).id)
    if condition is not None:
        where.append(condition)
    last = (RunRow.start_time.desc(), RunRow.id.desc())
    total = session.scalar(select(func.count()).select_from(RunRow).where(*where)) or 0
    rows: list[RunRow]
    if lead is not None and total >= _INDEX_WALK_FACTOR * (req.offset + req.limit):
        rows = _search_by_metric(session, where, lead, order[1:], last, req.offset, req.limit)
    else:  # few matches: sorting them all is cheaper than walking an index for them
        rows = list(
            session.scalars(
                select(RunRow)
                .where(*where)
                .order_by(*order, *last)
                .limit(req.limit)
                .offset(req.offset)
            )
        )
    return RunList(runs=_runs_out(session, rows), total=total)


# Walk the leading metric's index when the matches outnumber the rows wanted by this
# factor (the walk skips non-matching entries, so it pays off only for common matches).
_INDEX_WALK_FACTOR = 10


def _search_by_metric(
    session: Session,
    where: list[Any],
    lead: query.LeadingMetric,
    rest: list[Any],
    last: tuple[Any, ...],
    offset: int,
    limit: int,
) -> list[RunRow]:
    """A page ordered first by a metric, as two ordered reads: runs with a value for it
    (driven by the summaries' (key, value) index, so the database reads about a page of
    index entries rather than sorting every matching run), then, if the page is not full,
    runs without one (missing or NaN: sorted last, as NULLS LAST orders them)."""
    summary = aliased(MetricSummaryRow)
    column = getattr(summary, lead.column.key)
    has_value = select(summary).where(
        summary.run_id == RunRow.id, summary.key == lead.key, column.is_not(None)
    )
    want = offset + limit
    valued = list(
        session.scalars(
            select(RunRow)
            .join(summary, and_(summary.run_id == RunRow.id, summary.key == lead.key))
            .where(*where, column.is_not(None))
            .order_by(column.desc() if lead.descending else column.asc(), *rest, *last)
            .limit(want)
        )
    )
    rows = valued[offset:]
    if len(valued) == want:
        return rows
    rows += session.scalars(
        select(RunRow)
        .where(*where, ~has_value.exists())
        .order_by(*rest, *last)
        .offset(max(0, offset - len(valued)))
        .limit(limit - len(rows))
    )
    return rows


@ops.operation("GET", "/compare/runs", permission="tracking.read")
def compare_runs(ctx: Context, req: CompareRuns) -> Comparison:
    """Runs side by side: params (and which differ) and downsampled metric histories."""
    run_ids = list(dict.fromkeys(req.run_ids.split(",")))
    session = ctx.session
    rows = {r.id: r for r in session.scalars(select(RunRow).where(RunRow.id.in_(run_ids)))}
    missing = [i for i in run_ids if i not in rows]
    if missing:
        raise NotFound(f"runs do not exist: {', '.join(missing)}")
    runs = _runs_out(session, [rows[i] for i in run_ids])
    param_keys = sorted({k for r in runs for k in r.params})
    differing = [k for k in param_keys if len({r.params.get(k) for r in runs}) > 1]
    if req.metrics:
        keys = list(dict.fromkeys(req.metrics.split(",")))
    else:
        keys = sorted({k for r in runs for k in r.metrics})
    histories = {
        key: {r.id: metrics.history(session, r.id, key, req.max_points)[1] for r in runs}
        for key in keys
    }
    return Comparison(
        runs=runs, param_keys=param_keys, differing_params=differing, histories=histories
    )


__all__ = ["MetricPoint", "ops"]


# --- experiments by id, run artifacts ---------------------------------------------------


@ops.operation("GET", "/experiments/by-id/{experiment_id}", permission="tracking.read")
def get_experiment_by_id(ctx: Context, req: GetExperimentById) -> Experiment:
    """Describe an experiment given its id (``exp-...``)."""
    row = ctx.session.get(ExperimentRow, req.experiment_id)
    if row is None:
        raise NotFound(f"experiment id {req.experiment_id!r} does not exist")
    return _experiment_out(row)


@ops.operation("PUT", "/runs/{run_id}/artifacts", permission="tracking.write", stream_in=True)
def log_artifact(ctx: Context, req: LogRunArtifact, stream: BinaryIO) -> RunArtifact:
    """Store the request body as the run's output file at ``path`` (replacing one there).

    The run must be RUNNING. The content goes to the artifact store first (without
    holding the write transaction), then the run's row and a lineage edge
    ``run -> artifact`` (relation ``output``) are written together.
    """
    path = safe_relpath(req.path)
    ctx.audit_target = f"run:{req.run_id}"
    with ctx.read() as session:  # fail before storing anything for a missing or ended run
        run = _run_row(session, req.run_id)
        if run.status != "RUNNING":
            raise Conflict(f"run {run.id} is {run.status}; only a RUNNING run accepts artifacts")
    info = ctx.artifacts.put_stream(stream)
    session = ctx.session
    run = _run_row(session, req.run_id, lock=True)
    if run.status != "RUNNING":
        raise Conflict(f"run {run.id} is {run.status}; only a RUNNING run accepts artifacts")
    clash = session.scalars(
        select(RunArtifactRow.path).where(
            RunArtifactRow.run_id == run.id,
            (RunArtifactRow.path.like(_escape_like(path) + "/%", escape="\\"))
            | RunArtifactRow.path.in_(
                ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
            ),
        )
    ).first()
    if clash is not None:
        raise Conflict(
            f"run {run.id} already has {clash!r}: {path!r} cannot be both a file and a folder"
        )
    row = session.get(RunArtifactRow, (run.id, path))
    if row is None:
        session.add(
            RunArtifactRow(
                run_id=run.id, path=path, digest=info.digest, size=info.size, created_at=utcnow()
            )
        )
    else:
        row.digest, row.size, row.created_at = info.digest, info.size, utcnow()
    session.flush()
    lineage.record(
        session,
        recording.run_node(run),
        lineage.Node("artifact", info.digest, path),
        "output",
        actor=ctx.principal.user,
        attrs={"path": path},
    )
    ctx.emit("tracking.artifact_logged", {"run_id": run.id, "path": path, "digest": info.digest})
    return RunArtifact(path=path, is_dir=False, size=info.size, digest=info.digest)


@ops.operation("GET", "/runs/{run_id}/artifacts", permission="tracking.read")
def list_artifacts(ctx: Context, req: ListRunArtifacts) -> RunArtifactList:
    """Files and folders directly inside ``path`` of a run's outputs (one level, by path).

    A path that names a file, or nothing, lists as empty.
    """
    folder = safe_relpath(req.path) if req.path.strip("/") else ""
    session = ctx.session
    _run_row(session, req.run_id)
    stmt = select(RunArtifactRow.path, RunArtifactRow.size, RunArtifactRow.digest).where(
        RunArtifactRow.run_id == req.run_id
    )
    if folder:
        stmt = stmt.where(RunArtifactRow.path.like(_escape_like(folder) + "/%", escape="\\"))
    entries: dict[str, RunArtifact] = {}
    skip = len(folder) + 1 if folder else 0
    for path, size, digest in session.execute(stmt).tuples():
        head, sep, _ = path[skip:].partition("/")
        child = f"{folder}/{head}" if folder else head
        if sep:
            entries.setdefault(child, RunArtifact(path=child, is_dir=True, size=None, digest=None))
        else:
            entries[child] = RunArtifact(path=child, is_dir=False, size=size, digest=digest)
    return RunArtifactList(
        run_id=req.run_id, path=folder, artifacts=[entries[k] for k in sorted(entries)]
    )


@ops.operation(
    "GET", "/runs/{run_id}/artifacts/content", permission="tracking.read", stream_out=True
)
def download_artifact(ctx: Context, req: GetRunArtifact) -> StreamResult:
    """Stream one output file of a run; every chunk is verified before it is sent."""
    path = safe_relpath(req.path)
    session = ctx.session
    _run_row(session, req.run_id)
    row = session.get(RunArtifactRow, (req.run_id, path))
    if row is None:
        raise NotFound(f"run {req.run_id} has no artifact file {path!r}")
    return object_stream(ctx.artifacts, row.digest, filename=posixpath.basename(path))


@ops.operation("POST", "/runs/{run_id}/artifacts/archive", permission="tracking.write")
def archive_artifacts(ctx: Context, req: ArchiveRunArtifacts) -> RunArchive:
    """Pack the folder ``path`` of a run's outputs into one deterministic .tar.gz.

    The archive (paths relative to the folder) is stored in the artifact store and its
    digest returned, e.g. to register the folder as a model version. The same files
    always give the same digest. Nothing in the tables changes.
    """
    folder = safe_relpath(req.path)
    ctx.audit_target = f"run:{req.run_id}"
    with ctx.read() as session:
        _run_row(session, req.run_id)
        rows = session.execute(
            select(RunArtifactRow.path, RunArtifactRow.digest).where(
                RunArtifactRow.run_id == req.run_id,
                RunArtifactRow.path.like(_escape_like(folder) + "/%", escape="\\"),
            )
        ).all()
    if not rows:
        raise NotFound(f"run {req.run_id} has no artifact folder {folder!r}")
    with tempfile.TemporaryDirectory(prefix="modelyard-archive-") as tmp:
        root = Path(tmp) / "tree"
        for path, digest in rows:
            ctx.artifacts.get_to_path(digest, root / path[len(folder) + 1 :])
        archive = Path(tmp) / "archive.tar.gz"
        files = write_tar_gz(root, archive)
        info = ctx.artifacts.put_file(archive)
    return RunArchive(
        run_id=req.run_id, path=folder, digest=info.digest, size=info.size, files=len(files)
    )
