"""How other domains fill runs inside their own transactions (the jobs domain's runs).

A training or processing job owns one run: :func:`open_job_run` creates it when the job
is submitted (hyperparameters as params, input dataset versions, the source digest),
:func:`append_job_metrics` copies the metric points the job reports while it runs, and
:func:`close_job_run` records resource usage, the model and output files, and ends the
run with the job's final state. Each is called in the caller's transaction, so a run is
never out of step with its job.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.core import lineage
from modelyard.core.db import utcnow
from modelyard.core.ids import new_id
from modelyard.errors import Conflict
from modelyard.tracking import metrics
from modelyard.tracking.store import (
    ExperimentRow,
    MetricSummaryRow,
    ParamRow,
    RunArtifactRow,
    RunInputRow,
    RunRow,
    TagRow,
)

JOB_STATE_TO_RUN_STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Stopped": "KILLED"}


@dataclass(frozen=True)
class InputVersion:
    """A dataset version a run reads, with the role it plays (a channel name, "train")."""

    version_id: str
    dataset: str
    version: int
    context: str = ""

    def node(self) -> lineage.Node:
        return lineage.Node("dataset_version", self.version_id, f"{self.dataset} v{self.version}")


def experiment_for(session: Session, name: str, actor: str) -> ExperimentRow:
    """The experiment called ``name``, created (in this transaction) if it does not exist."""
    row = session.scalars(select(ExperimentRow).where(ExperimentRow.name == name)).first()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = ExperimentRow(id=new_id("exp"), name=name, tags={}, created_by=actor)
            session.add(row)
            session.flush()
        return row
    except IntegrityError as exc:  # created concurrently: read the winner's row
        found = session.scalars(select(ExperimentRow).where(ExperimentRow.name == name)).first()
        if found is None:
            raise Conflict(f"experiment {name!r} could not be created") from exc
        return found


def record_inputs(
    session: Session, run: RunRow, inputs: Sequence[InputVersion], *, actor: str
) -> None:
    """Store the run's input dataset versions and their lineage edges."""
    seen: set[str] = set()
    for item in inputs:
        if item.version_id in seen:
            continue
        seen.add(item.version_id)
        session.add(
            RunInputRow(
                run_id=run.id,
                dataset_version_id=item.version_id,
                dataset=item.dataset,
                version=item.version,
                context=item.context,
            )
        )
        lineage.record(
            session,
            item.node(),
            run_node(run),
            "input",
            actor=actor,
            attrs={"context": item.context} if item.context else None,
        )
    session.flush()


def run_node(run: RunRow) -> lineage.Node:
    return lineage.Node("run", run.id, f"run {run.name or run.id}")


def open_job_run(
    session: Session,
    *,
    job_id: str,
    job_name: str,
    experiment: str,
    actor: str,
    params: dict[str, Any],
    tags: dict[str, str],
    code_digest: str | None,
) -> RunRow:
    """Create the run of a job being submitted (the job's row is written by the caller)."""
    exp = experiment_for(session, experiment, actor)
    run = RunRow(
        id=new_id("run"),
        experiment_id=exp.id,
        name=job_name[:200],
        status="RUNNING",
        start_time=utcnow(),
        end_time=None,
        created_by=actor,
        notes="",
        job_id=job_id,
        code_digest=code_digest,
        git_commit=None,
        environment={},
    )
    session.add(run)
    session.flush()
    if params:
        session.execute(
            insert(ParamRow),
            [{"run_id": run.id, "key": k[:250], "value": str(v)} for k, v in params.items()],
        )
    all_tags = {"modelyard.job": job_id, **tags}
    session.execute(
        insert(TagRow), [{"run_id": run.id, "key": k, "value": v} for k, v in all_tags.items()]
    )
    lineage.record(
        session,
        lineage.Node("job", job_id, f"job {job_name}"),
        run_node(run),
        "tracked_as",
        actor=actor,
    )
    return run


def job_run(session: Session, job_id: str) -> RunRow | None:
    return session.scalars(select(RunRow).where(RunRow.job_id == job_id)).first()


def append_points(
    session: Session, run: RunRow, points: Iterable[tuple[str, float, int, int | None]]
) -> int:
    """Append ``(key, value, step, timestamp_ms)`` points to a run, summaries included."""
    now_ms = int(time.time() * 1000)
    index: dict[str, int] = {}
    key_index: list[int] = []
    values: list[float] = []
    steps: list[int] = []
    timestamps: list[int] = []
    for key, value, step, timestamp in points:
        key_index.append(index.setdefault(key, len(index)))
        values.append(float(value))
        steps.append(int(step))
        timestamps.append(now_ms if timestamp is None else int(timestamp))
    metrics.insert_points(session, run.id, list(index), key_index, values, steps, timestamps)
    return len(key_index)


def append_job_metrics(
    session: Session, job_id: str, points: Iterable[tuple[str, float, int | None, int | None]]
) -> None:
    """Copy metric points a job reported into its run (no-op for a job without a run)."""
    run = job_run(session, job_id)
    if run is None or run.status != "RUNNING":
        return
    batch = list(points)
    counts = dict(
        session.execute(
            select(MetricSummaryRow.key, MetricSummaryRow.count).where(
                MetricSummaryRow.run_id == run.id,
                MetricSummaryRow.key.in_({key for key, _, step, _ in batch if step is None}),
            )
        )
        .tuples()
        .all()
    )
    numbered = []
    for key, value, step, timestamp in batch:
        if step is None:  # a log line without a step: the next step of that key
            step = counts.get(key, 0)
            counts[key] = step + 1
        numbered.append((key, value, step, timestamp))
    append_points(session, run, numbered)


def close_job_run(
    session: Session,
    *,
    job_id: str,
    job_name: str,
    state: str,
    actor: str,
    usage: dict[str, Any] | None,
    model: tuple[str, int] | None,
    outputs: Sequence[tuple[str, str, int]],
) -> None:
    """End a job's run: usage metrics, model and outputs as run artifacts, final status.

    ``model`` is ``(digest, size)`` of the model archive; ``outputs`` are
    ``(path, digest, size)``. Lineage records ``job -> artifact`` for each.
    """
    run = job_run(session, job_id)
    if run is None or run.status != "RUNNING":
        return
    if usage:
        step = 0
        usage_points = [
            (f"usage.{key}", float(value), step, None)
            for key, value in usage.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        append_points(session, run, usage_points)
    job_node = lineage.Node("job", job_id, f"job {job_name}")
    files: list[tuple[str, str, int, str]] = []
    if model is not None:
        files.append(("model/model.tar.gz", model[0], model[1], "model"))
    files.extend((f"output/{path}", digest, size, "output") for path, digest, size in outputs)
    for path, digest, size, relation in files:
        existing = session.get(RunArtifactRow, (run.id, path))
        if existing is None:
            session.add(RunArtifactRow(run_id=run.id, path=path, digest=digest, size=size))
        else:
            existing.digest, existing.size = digest, size
        lineage.record(
            session,
            job_node,
            lineage.Node("artifact", digest, path.rsplit("/", 1)[-1]),
            relation,
            actor=actor,
            attrs={"path": path, "size": size},
        )
    run.status = JOB_STATE_TO_RUN_STATUS.get(state, "FAILED")
    run.end_time = utcnow()
    session.flush()
