"""Requests and answers of the lineage domain."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import ConfigDict, Field

from modelyard.core.schema import Schema
from modelyard.types import NodeType


class GetLineage(Schema):
    model_config = ConfigDict(extra="forbid")

    node_type: NodeType
    node_id: str = Field(min_length=1, max_length=100)
    direction: Literal["upstream", "downstream", "both"] = "both"
    depth: int = Field(default=10, ge=1, le=50)


class LineageNode(Schema):
    type: str
    id: str
    label: str


class LineageEdge(Schema):
    source: str  # "<type>:<id>"
    target: str
    relation: str
    attrs: dict[str, Any]
    created_at: dt.datetime
    created_by: str


class LineageGraph(Schema):
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]
