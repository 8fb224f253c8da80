"""Lineage: the graph from data to deployed models, one edge per recorded fact.

Every edge is written by the operation that creates the relationship, in that
operation's transaction (a job that reads a dataset version records
``dataset_version -> job``; a run that logs an output records ``run -> artifact``; a
model version registered from a run records ``run -> model_version``). Nothing is
reconstructed later, so the graph is exactly as trustworthy as the operations.

A node is ``(type, id)``: ``dataset_version`` (its row id), ``job``, ``run``,
``artifact`` (the SHA-256 digest), ``model_version`` and ``endpoint``. Each edge keeps
a human label for both ends, so drawing a graph never has to read other domains' tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint, or_, select, tuple_
from sqlalchemy.orm import Mapped, Session, mapped_column

from modelyard.core.db import Base, JSONType, UTCDateTime, utcnow
from modelyard.types import NODE_TYPES

Direction = Literal["upstream", "downstream"]


class LineageEdgeRow(Base):
    __tablename__ = "lineage_edges"
    __table_args__ = (
        UniqueConstraint("src_type", "src_id", "dst_type", "dst_id", "relation"),
        Index("ix_lineage_edges_src", "src_type", "src_id"),
        Index("ix_lineage_edges_dst", "dst_type", "dst_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    src_type: Mapped[str] = mapped_column(String(40))
    src_id: Mapped[str] = mapped_column(String(100))
    src_label: Mapped[str] = mapped_column(String(300))
    dst_type: Mapped[str] = mapped_column(String(40))
    dst_id: Mapped[str] = mapped_column(String(100))
    dst_label: Mapped[str] = mapped_column(String(300))
    relation: Mapped[str] = mapped_column(String(40))
    attrs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))


@dataclass(frozen=True)
class Node:
    type: str
    id: str
    label: str

    def __post_init__(self) -> None:
        if self.type not in NODE_TYPES:
            raise ValueError(f"unknown lineage node type {self.type!r}")


def _canonical(node: Node) -> Node:
    if node.type == "artifact":
        return Node("artifact", node.id, f"sha256:{node.id[:12]}")
    return node


def record(
    session: Session,
    src: Node,
    dst: Node,
    relation: str,
    *,
    actor: str,
    attrs: dict[str, Any] | None = None,
) -> None:
    """Add the edge ``src -[relation]-> dst`` unless it is already there.

    An artifact is labelled by its digest (``sha256:<12 hex>``) whatever the caller
    called it: the same content may be a file of many names, which go in ``attrs``.
    """
    src, dst = _canonical(src), _canonical(dst)
    existing = session.scalars(
        select(LineageEdgeRow.id).where(
            LineageEdgeRow.src_type == src.type,
            LineageEdgeRow.src_id == src.id,
            LineageEdgeRow.dst_type == dst.type,
            LineageEdgeRow.dst_id == dst.id,
            LineageEdgeRow.relation == relation,
        )
    ).first()
    if existing is not None:
        return
    session.add(
        LineageEdgeRow(
            src_type=src.type,
            src_id=src.id,
            src_label=src.label[:300],
            dst_type=dst.type,
            dst_id=dst.id,
            dst_label=dst.label[:300],
            relation=relation,
            attrs=attrs or {},
            created_by=actor,
        )
    )
    session.flush()


def edges_of(
    session: Session, node_type: str, node_id: str, *, direction: Direction, relation: str | None
) -> list[LineageEdgeRow]:
    """The edges one step away from a node (into it for upstream, out of it for downstream)."""
    if direction == "upstream":
        stmt = select(LineageEdgeRow).where(
            LineageEdgeRow.dst_type == node_type, LineageEdgeRow.dst_id == node_id
        )
    else:
        stmt = select(LineageEdgeRow).where(
            LineageEdgeRow.src_type == node_type, LineageEdgeRow.src_id == node_id
        )
    if relation is not None:
        stmt = stmt.where(LineageEdgeRow.relation == relation)
    return list(session.scalars(stmt.order_by(LineageEdgeRow.id)))


def traverse(
    session: Session,
    start: Iterable[tuple[str, str]],
    *,
    direction: Direction,
    depth: int,
    limit: int = 2000,
) -> list[LineageEdgeRow]:
    """Breadth-first walk, one query per level; returns each edge once, at most ``limit``."""
    frontier = set(start)
    seen_nodes = set(frontier)
    seen_edges: set[int] = set()
    found: list[LineageEdgeRow] = []
    for _ in range(depth):
        if not frontier or len(found) >= limit:
            break
        if direction == "upstream":
            cond = tuple_(LineageEdgeRow.dst_type, LineageEdgeRow.dst_id).in_(list(frontier))
        else:
            cond = tuple_(LineageEdgeRow.src_type, LineageEdgeRow.src_id).in_(list(frontier))
        rows = session.scalars(
            select(LineageEdgeRow).where(or_(cond)).order_by(LineageEdgeRow.id)
        ).all()
        next_frontier: set[tuple[str, str]] = set()
        for row in rows:
            if row.id in seen_edges:
                continue
            seen_edges.add(row.id)
            found.append(row)
            far = (
                (row.src_type, row.src_id)
                if direction == "upstream"
                else (row.dst_type, row.dst_id)
            )
            if far not in seen_nodes:
                seen_nodes.add(far)
                next_frontier.add(far)
        frontier = next_frontier
    return found[:limit]
