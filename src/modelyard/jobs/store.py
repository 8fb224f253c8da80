"""Tables of the jobs domain: jobs, their attempts, log lines, metric points, finishes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.core.db import Base, JSONType, UTCDateTime, utcnow


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_created_at", "state", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20))
    state_reason: Mapped[str] = mapped_column(Text, default="")
    # The desired state: set by jobs.stop, acted on by the controller.
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    backend: Mapped[str] = mapped_column(String(600))
    # A JobSpec (schemas.py), fixed at submit.
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    # The last log sequence number handed out; only the controller appends lines.
    log_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # A ModelArtifact and a list of OutputFile, set when the job completes.
    model: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AttemptRow(Base):
    __tablename__ = "job_attempts"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), index=True)
    backend: Mapped[str] = mapped_column(String(600))
    # What the backend needs to find the attempt again after a restart (pid, start time…).
    backend_ref: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    signal: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A ResourceUsage, set when the attempt ends.
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # Bytes of each log stream already stored as lines: {"stdout": n, "stderr": n}.
    log_offsets: Mapped[dict[str, int]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LogLineRow(Base):
    __tablename__ = "job_log_lines"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    stream: Mapped[str] = mapped_column(String(10))
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    text: Mapped[str] = mapped_column(Text)


class MetricRow(Base):
    __tablename__ = "job_metrics"
    __table_args__ = (Index("ix_job_metrics_job_id_name", "job_id", "name"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[float] = mapped_column(Double)
    step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(10))


class JobFinishRow(Base):
    """A job its kind's finisher has handled (:class:`modelyard.jobs.kinds.JobFinisher`):
    written once, after the finisher's ``finish`` returned, so a finisher that restarts
    (or takes over) does not call it again."""

    __tablename__ = "job_finishes"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    finisher: Mapped[str] = mapped_column(String(100))
    # "finished", or "refused": finish raised a client error (logged; not tried again).
    outcome: Mapped[str] = mapped_column(String(20))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
