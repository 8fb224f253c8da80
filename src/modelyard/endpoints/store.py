"""Tables of the endpoints domain.

``endpoints`` holds the desired state: the deployed variants (pinned model versions,
replica counts), the live traffic weights by variant id and the capture settings.
``endpoint_replicas`` holds one row per model-server process the controller should keep
running, with what it needs to find the process again after a restart (supervisor pid
and start time, port). ``endpoint_rollouts`` is the durable state machine of an update.
``endpoint_events``, ``endpoint_capture_files`` and ``endpoint_metrics`` are append-only
and keep the endpoint's name, so they outlive a deleted endpoint (monitoring still
reads its capture files).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Double, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.core.db import Base, JSONType, UTCDateTime, utcnow


class EndpointRow(Base):
    __tablename__ = "endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text, default="")
    # [Variant as JSON]: every deployed variant, old and new ones during a rollout.
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    # {variant id: weight}, weights summing to 1 over the non-shadow variants.
    traffic: Mapped[dict[str, float]] = mapped_column(JSONType)
    capture: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # The endpoint's own loopback port (the router served by the controller).
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Bumped on every change that routers must see.
    generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReplicaRow(Base):
    __tablename__ = "endpoint_replicas"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id"), index=True)
    variant_id: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20))
    host: Mapped[str] = mapped_column(String(255), default="127.0.0.1")
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Where it runs: "local" (a supervised process here) or a Ray backend URL (an actor).
    placement: Mapped[str] = mapped_column(String(300), default="local", server_default="local")
    # The supervisor process (pid + start time identify it across pid reuse).
    supervisor_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    supervisor_started: Mapped[float | None] = mapped_column(Double, nullable=True)
    # The model server the supervisor runs.
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    # Consecutive failures before becoming ready; the replica gives up at a limit.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    state_since: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RolloutRow(Base):
    __tablename__ = "endpoint_rollouts"
    __table_args__ = (Index("ix_endpoint_rollouts_endpoint_created", "endpoint", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(40), index=True)
    endpoint: Mapped[str] = mapped_column(String(63))
    strategy: Mapped[dict[str, Any]] = mapped_column(JSONType)
    from_variants: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    to_variants: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    # Ids of the variants this rollout deploys (the ones its alarms watch).
    new_variant_ids: Mapped[list[str]] = mapped_column(JSONType)
    steps: Mapped[list[float]] = mapped_column(JSONType)
    step: Mapped[int] = mapped_column(Integer, default=0)
    # starting -> baking (per step) -> done
    phase: Mapped[str] = mapped_column(String(20), default="starting")
    phase_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class EndpointEventRow(Base):
    __tablename__ = "endpoint_events"
    __table_args__ = (Index("ix_endpoint_events_endpoint_seq", "endpoint", "seq"),)

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    endpoint: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaptureFileRow(Base):
    __tablename__ = "endpoint_capture_files"
    __table_args__ = (Index("ix_endpoint_capture_files_endpoint_first", "endpoint", "first_time"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(63))
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    first_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MetricRow(Base):
    __tablename__ = "endpoint_metrics"
    __table_args__ = (
        Index("ix_endpoint_metrics_endpoint_metric_time", "endpoint", "metric", "time"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    endpoint: Mapped[str] = mapped_column(String(63))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Double)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
