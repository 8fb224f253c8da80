"""The controller's reads and writes of the jobs tables.

The controller acts as :data:`CONTROLLER` (user ``system:jobs``, role ``system``): the
events its changes write carry that actor, and each attempt it ends is audited as
``jobs.finish_attempt`` by it (origin ``controller:jobs``), in the same transaction.

Each function is one short transaction that locks the job row first, so it cannot
interleave with an operation on the same job (``jobs.stop``) in a way that loses either
change. Each is safe to repeat after a crash: a finished attempt is never finished twice,
and log lines are appended only if the stored offsets are still the ones they were read
from.
"""

from __future__ import annotations

import signal as signals
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from modelyard.compute.backends.base import AttemptExit, BackendRef, Collected
from modelyard.core.controllers import system_principal
from modelyard.core.db import Database, utcnow
from modelyard.core.events import write_events
from modelyard.core.ids import new_id
from modelyard.jobs.metrics import ExtractedMetric
from modelyard.jobs.schemas import TERMINAL_STATES, JobSpec
from modelyard.jobs.states import advance
from modelyard.jobs.store import AttemptRow, JobRow, LogLineRow, MetricRow
from modelyard.security.service import record_audit
from modelyard.tracking import recording

# What the jobs controller may do: read and write jobs (it calls no other domain).
CONTROLLER = system_principal("jobs", ("jobs.read", "jobs.write"))
ORIGIN = "controller:jobs"


@dataclass(frozen=True)
class ActiveAttempt:
    """A snapshot of a Starting or Running attempt and what the controller needs of its job."""

    attempt_id: str
    job_id: str
    job_name: str
    number: int
    state: str
    backend: str
    ref: BackendRef
    offsets: dict[str, int]
    spec: JobSpec
    stop_requested: bool


@dataclass(frozen=True)
class PendingJob:
    job_id: str
    backend: str
    spec: JobSpec


def end_job_run(
    session: Session,
    job: JobRow,
    usage: dict[str, Any] | None = None,
    *,
    actor: str = CONTROLLER.user,
) -> None:
    """End the job's tracked run with the job's final state, usage, model and outputs.

    Called at every move to a final state, in its transaction, so it also writes the
    outbox event ``job.completed``, ``job.failed`` or ``job.stopped`` (payload: ``job``,
    ``kind``, ``state``; actor: who ended it) that other domains react to (the transform
    finisher).
    """
    write_events(
        session,
        actor,
        [(f"job.{job.state.lower()}", {"job": job.id, "kind": job.kind, "state": job.state})],
    )
    model = (job.model["digest"], int(job.model["size"])) if job.model else None
    outputs = [(o["path"], o["digest"], int(o["size"])) for o in job.outputs or []]
    recording.close_job_run(
        session,
        job_id=job.id,
        job_name=job.name,
        state=job.state,
        actor=job.created_by,
        usage=usage,
        model=model,
        outputs=outputs,
    )


def _locked_job(session: Session, job_id: str) -> JobRow | None:
    return session.scalars(select(JobRow).where(JobRow.id == job_id).with_for_update()).first()


def _active(att: AttemptRow, job: JobRow) -> ActiveAttempt:
    return ActiveAttempt(
        attempt_id=att.id,
        job_id=job.id,
        job_name=job.name,
        number=att.number,
        state=att.state,
        backend=att.backend,
        ref=dict(att.backend_ref or {}),
        offsets=dict(att.log_offsets or {}),
        spec=JobSpec.model_validate(job.spec),
        stop_requested=job.stop_requested,
    )


def active_attempt(db: Database, job_id: str) -> ActiveAttempt | None:
    """The job's Starting or Running attempt (a job has at most one), or None."""
    with db.transaction(write=False) as session:
        row = session.execute(
            select(AttemptRow, JobRow)
            .join(JobRow, JobRow.id == AttemptRow.job_id)
            .where(AttemptRow.job_id == job_id, AttemptRow.state.in_(("Starting", "Running")))
            .order_by(AttemptRow.number.desc())
            .limit(1)
        ).first()
        return None if row is None else _active(row[0], row[1])


def _audit_end(session: Session, job: JobRow, att: AttemptRow | None, reason: str | None) -> None:
    detail: dict[str, Any] = {"job_state": job.state}
    if att is not None:
        detail |= {"attempt": att.number, "attempt_state": att.state}
    if reason:
        detail["reason"] = reason[:500]
    record_audit(
        session,
        principal=CONTROLLER,
        operation="jobs.finish_attempt",
        target=f"job:{job.id}",
        origin=ORIGIN,
        result="ok",
        request_id=new_id("req"),
        detail=detail,
    )


def active_attempts(db: Database) -> list[ActiveAttempt]:
    with db.transaction(write=False) as session:
        rows = session.execute(
            select(AttemptRow, JobRow)
            .join(JobRow, JobRow.id == AttemptRow.job_id)
            .where(AttemptRow.state.in_(("Starting", "Running")))
            .order_by(AttemptRow.created_at)
        ).all()
        return [_active(att, job) for att, job in rows]


PENDING_PAGE = 200  # the Pending jobs one admission pass looks at


def pending_jobs(db: Database, limit: int = PENDING_PAGE) -> list[PendingJob]:
    """Pending jobs, oldest first (the admission order)."""
    with db.transaction(write=False) as session:
        rows = session.scalars(
            select(JobRow)
            .where(JobRow.state == "Pending")
            .order_by(JobRow.created_at, JobRow.id)
            .limit(limit)
        )
        return [PendingJob(r.id, r.backend, JobSpec.model_validate(r.spec)) for r in rows]


def claim(db: Database, job_id: str) -> ActiveAttempt | None:
    """Pending → Starting with a new attempt; None if the job is no longer Pending.

    A job whose stop was requested meanwhile goes to Stopped instead.
    """
    with db.transaction() as session:
        job = _locked_job(session, job_id)
        if job is None or job.state != "Pending":
            return None
        now = utcnow()
        job.updated_at = now
        if job.stop_requested:
            advance(job, "Stopped", what=f"job {job.id}")
            job.ended_at = now
            end_job_run(session, job)
            _audit_end(session, job, None, "stopped before an attempt started")
            return None
        job.attempt_count += 1
        att = AttemptRow(
            id=new_id("att"),
            job_id=job.id,
            number=job.attempt_count,
            state="Starting",
            backend=job.backend,
            backend_ref={},
            log_offsets={},
            created_at=now,
        )
        session.add(att)
        advance(job, "Starting", what=f"job {job.id}")
        job.state_reason = f"starting attempt {att.number}"
        session.flush()
        return _active(att, job)


def record_launch(db: Database, attempt_id: str, ref: BackendRef) -> None:
    """The backend took the attempt: attempt and job → Running (no-op if already)."""
    with db.transaction() as session:
        att = session.get(AttemptRow, attempt_id)
        if att is None:
            return
        job = _locked_job(session, att.job_id)
        session.refresh(att)
        if job is None or att.state != "Starting":
            return
        now = utcnow()
        advance(att, "Running", what=f"attempt {att.number} of job {job.id}", attempt=True)
        att.backend_ref = dict(ref)
        att.started_at = now
        if job.state == "Starting":
            advance(job, "Running", what=f"job {job.id}")
            job.state_reason = f"attempt {att.number} running"
            job.started_at = job.started_at or now
            job.updated_at = now


def append_logs(
    db: Database,
    active: ActiveAttempt,
    lines: list[tuple[str, str]],
    read_from: dict[str, int],
    offsets: dict[str, int],
    metrics: list[ExtractedMetric],
) -> bool:
    """Store ``lines`` and their metrics and move the attempt's offsets to ``offsets``.

    Nothing is written (False) unless the stored offsets still equal ``read_from``, so a
    repeated read after a crash never duplicates lines.
    """
    with db.transaction() as session:
        job = _locked_job(session, active.job_id)
        att = session.get(AttemptRow, active.attempt_id)
        if job is None or att is None or dict(att.log_offsets or {}) != read_from:
            return False
        now = utcnow()
        if lines:
            session.execute(
                insert(LogLineRow),
                [
                    {
                        "job_id": job.id,
                        "seq": job.log_seq + i,
                        "attempt": att.number,
                        "stream": stream,
                        "time": now,
                        "text": text,
                    }
                    for i, (stream, text) in enumerate(lines, start=1)
                ],
            )
            job.log_seq += len(lines)
        if metrics:
            session.execute(
                insert(MetricRow),
                [
                    {
                        "job_id": job.id,
                        "attempt": att.number,
                        "name": m.name,
                        "value": m.value,
                        "step": m.step,
                        "time": now,
                        "source": m.source,
                    }
                    for m in metrics
                ],
            )
            recording.append_job_metrics(
                session, job.id, [(m.name, m.value, m.step, None) for m in metrics]
            )
        att.log_offsets = dict(offsets)
        return True


def current_offsets(db: Database, attempt_id: str) -> dict[str, int] | None:
    """The attempt's stored log offsets (None if it does not exist)."""
    with db.transaction(write=False) as session:
        att = session.get(AttemptRow, attempt_id)
        return None if att is None else dict(att.log_offsets or {})


def describe_exit(exit: AttemptExit) -> str:
    """A sentence for an attempt that did not succeed, without the job's own words."""
    if exit.reason in ("spawn_error", "lost", "collect_error") and exit.message:
        return exit.message
    if exit.signal is not None:
        try:
            name = signals.Signals(exit.signal).name
        except ValueError:
            name = f"signal {exit.signal}"
        return f"the job's process was killed by {name}"
    if exit.exit_code is not None:
        return f"the job's process exited with code {exit.exit_code}"
    return exit.message or f"the attempt ended ({exit.reason})"


def finish_attempt(
    db: Database, attempt_id: str, exit: AttemptExit, collected: Collected | None
) -> str | None:
    """Record how an attempt ended and move the job on; the job's new state.

    Completed when it succeeded; Stopped when it was stopped (or its stop was requested);
    Failed at max runtime; otherwise the attempt failed and the job goes back to Pending
    if the retry policy allows another attempt, else Failed. No-op if already recorded.
    """
    with db.transaction() as session:
        att = session.get(AttemptRow, attempt_id)
        if att is None:
            return None
        job = _locked_job(session, att.job_id)
        session.refresh(att)
        if job is None or att.state in TERMINAL_STATES:
            return None
        spec = JobSpec.model_validate(job.spec)
        now = utcnow()
        what = f"attempt {att.number} of job {job.id}"
        att.exit_code = exit.exit_code
        att.signal = exit.signal
        att.usage = exit.usage.model_dump() if exit.usage else None
        att.ended_at = exit.ended_at or now
        att.started_at = att.started_at or exit.started_at
        job.updated_at = now
        own_words = collected.failure if collected else None
        if exit.succeeded:
            if att.state == "Starting":
                advance(att, "Running", what=what, attempt=True)
            advance(att, "Completed", what=what, attempt=True)
            if job.stop_requested and job.state == "Running":
                job.state_reason = f"attempt {att.number} completed before it could be stopped"
            else:
                job.state_reason = f"attempt {att.number} completed"
            advance(job, "Completed", what=f"job {job.id}")
            job.model = collected.model.model_dump() if collected and collected.model else None
            job.outputs = [o.model_dump() for o in collected.outputs] if collected else []
            job.ended_at = now
            end_job_run(session, job, att.usage)
            _audit_end(session, job, att, None)
            return job.state
        if exit.reason == "stopped" or job.stop_requested:
            advance(att, "Stopped", what=what, attempt=True)
            att.failure_reason = None
            advance(job, "Stopped", what=f"job {job.id}")
            job.state_reason = f"stopped during attempt {att.number}"
            job.ended_at = now
            end_job_run(session, job, att.usage)
            _audit_end(session, job, att, None)
            return job.state
        if exit.reason == "max_runtime":
            reason = (
                f"MaxRuntimeExceeded: attempt {att.number} ran longer than "
                f"max_runtime_s={spec.max_runtime_s} and was stopped"
            )
        else:
            reason = own_words or describe_exit(exit)
        advance(att, "Failed", what=what, attempt=True)
        att.failure_reason = reason
        retry = exit.reason != "max_runtime" and job.attempt_count < spec.retry.max_attempts
        if retry:
            advance(job, "Pending", what=f"job {job.id}")
            job.state_reason = (
                f"attempt {att.number} failed ({reason}); retrying as attempt "
                f"{att.number + 1} of {spec.retry.max_attempts}"
            )
        else:
            advance(job, "Failed", what=f"job {job.id}")
            job.failure_reason = reason
            job.state_reason = f"attempt {att.number} failed"
            job.ended_at = now
            end_job_run(session, job, att.usage)
        _audit_end(session, job, att, reason)
        return job.state


def job_usage(spec: JobSpec) -> dict[str, Any]:
    """What the job holds while it runs: per-instance resources times ``instance_count``."""
    r = spec.resources
    n = r.instance_count
    return {"cpus": r.cpus * n, "memory_mb": (r.memory_mb or 0) * n, "gpus": r.gpus * n}
