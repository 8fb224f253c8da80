"""Type aliases shared across the package."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO, Literal, get_args

JSON = dict[str, Any]
Chunks = Iterator[bytes]
Stream = BinaryIO

# The kinds of lineage node (core/lineage.py); here so that the lineage schemas and the
# CLI's help can name them without importing the lineage tables.
NodeType = Literal["dataset_version", "job", "run", "artifact", "model_version", "endpoint"]
NODE_TYPES: tuple[str, ...] = get_args(NodeType)
