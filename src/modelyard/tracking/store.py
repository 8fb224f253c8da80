"""Tables of the tracking domain.

Metric points go to ``tracking_metrics`` (one row per point, inserted a batch at a time
in one statement); ``tracking_metric_summaries`` holds one row per (run, key) with the
latest value, min and max, updated in the same transaction, so search filters and sorts
on metrics without scanning histories. NaN is stored as NULL (SQLite cannot store NaN).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Double, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.core.db import Base, JSONType, UTCDateTime, utcnow


class ExperimentRow(Base):
    __tablename__ = "tracking_experiments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    tags: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))


class RunRow(Base):
    __tablename__ = "tracking_runs"
    __table_args__ = (Index("ix_tracking_runs_experiment_start", "experiment_id", "start_time"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_experiments.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20))
    start_time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(100))
    notes: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    code_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    environment: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class ParamRow(Base):
    __tablename__ = "tracking_params"
    run_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TagRow(Base):
    __tablename__ = "tracking_tags"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MetricRow(Base):
    __tablename__ = "tracking_metrics"
    __table_args__ = (Index("ix_tracking_metrics_run_key_step", "run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(ForeignKey("tracking_runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    value: Mapped[float | None] = mapped_column(Double, nullable=True)  # NULL = NaN
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)  # milliseconds since the epoch


class MetricSummaryRow(Base):
    __tablename__ = "tracking_metric_summaries"
    __table_args__ = (Index("ix_tracking_metric_summaries_key_latest", "key", "latest"),)

    run_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    latest: Mapped[float | None] = mapped_column(Double, nullable=True)  # NULL = NaN
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    min: Mapped[float | None] = mapped_column(Double, nullable=True)  # over non-NaN values
    max: Mapped[float | None] = mapped_column(Double, nullable=True)
    count: Mapped[int] = mapped_column(BigInteger)


class MetricTileRow(Base):
    """M4 of one fixed-width step range of a (run, key): precomputed at ingest.

    ``level`` is log2 of the tile width in steps and ``tile`` is ``step >> level``, so a
    tile covers steps ``[tile << level, (tile + 1) << level)``. Each tile keeps the point
    count, its first and last point in (step, timestamp, insertion) order, and the first
    points (in that order) holding its minimum and maximum non-NaN value. Batches merge
    into the tiles they touch with one upsert per batch, in the points' transaction, so a
    downsampled read of a long history reads tiles instead of every point.
    """

    __tablename__ = "tracking_metric_tiles"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    tile: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    first_step: Mapped[int] = mapped_column(BigInteger)
    first_ts: Mapped[int] = mapped_column(BigInteger)
    first_value: Mapped[float | None] = mapped_column(Double, nullable=True)  # NULL = NaN
    last_step: Mapped[int] = mapped_column(BigInteger)
    last_ts: Mapped[int] = mapped_column(BigInteger)
    last_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    lo: Mapped[float | None] = mapped_column(Double, nullable=True)  # NULL: only NaN
    lo_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lo_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    hi: Mapped[float | None] = mapped_column(Double, nullable=True)
    hi_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    hi_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RunArtifactRow(Base):
    """A file a run produced: its path inside the run and the content-addressed object."""

    __tablename__ = "tracking_run_artifacts"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RunInputRow(Base):
    """A dataset version a run read, with the role it played (train, validation...)."""

    __tablename__ = "tracking_run_inputs"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_version_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    context: Mapped[str] = mapped_column(String(100), default="")
