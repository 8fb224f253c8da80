"""Tables of the model registry: groups, versions, aliases and the change history.

Version numbers are handed out by ``registry_model_groups.version_count``: registering
locks the group row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every write
transaction already holds the database's write lock), increments the counter and inserts
the version in the same transaction, so numbers run 1..n without gaps or duplicates.
``UNIQUE(group_id, version)`` is the backstop.

``registry_history`` is append-only: the service only ever inserts into it, in the same
transaction as the change it describes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from modelyard.core.db import Base, JSONType, UTCDateTime, utcnow


class ModelGroupRow(Base):
    __tablename__ = "registry_model_groups"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The highest version number handed out; incremented under the row lock.
    version_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelVersionRow(Base):
    __tablename__ = "registry_model_versions"
    __table_args__ = (
        UniqueConstraint("group_id", "version"),
        Index("ix_registry_model_versions_group_status", "group_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("registry_model_groups.id"))
    version: Mapped[int] = mapped_column(Integer)
    artifact_digest: Mapped[str] = mapped_column(String(64), index=True)
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    # The file name a single-file artifact is downloaded as ("" for a folder archive).
    artifact_filename: Mapped[str] = mapped_column(String(255), default="")
    flavor: Mapped[str] = mapped_column(String(100))
    flavor_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # {"inputs": [{name, type, shape?}], "outputs": [...]}, or {} when unknown.
    signature: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The model card: intended_use, evaluation, limitations and further free-text fields.
    card: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    source_run_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    source_job_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(30))
    status_reason: Mapped[str] = mapped_column(Text, default="")
    status_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))


class ModelAliasRow(Base):
    """A movable name (``production``, ``staging``...) for one version of a group."""

    __tablename__ = "registry_aliases"
    __table_args__ = (UniqueConstraint("group_id", "alias"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    group_id: Mapped[str] = mapped_column(ForeignKey("registry_model_groups.id"))
    alias: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[str] = mapped_column(ForeignKey("registry_model_versions.id"), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100))


class HistoryRow(Base):
    """One change: a registration, a status change or an alias move/deletion."""

    __tablename__ = "registry_history"
    __table_args__ = (Index("ix_registry_history_group_seq", "group_id", "seq"),)

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    group_id: Mapped[str] = mapped_column(ForeignKey("registry_model_groups.id"))
    # The version concerned (for an alias: the version it pointed at after the change,
    # or before it for a deletion).
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(20))  # registered | status | alias
    alias: Mapped[str | None] = mapped_column(String(100), nullable=True)
    old_value: Mapped[str | None] = mapped_column(String(100), nullable=True)
    new_value: Mapped[str | None] = mapped_column(String(100), nullable=True)
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text, default="")
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


def _append_only(_mapper: Mapper[HistoryRow], _conn: Connection, row: HistoryRow) -> None:
    raise RuntimeError(f"registry history is append-only (entry {row.seq} was changed)")


event.listen(HistoryRow, "before_update", _append_only)
event.listen(HistoryRow, "before_delete", _append_only)
