"""Operations of the model registry (being written)."""

from __future__ import annotations

from modelyard.core.operations import OperationSet
from modelyard.registry import store as _store  # noqa: F401  (registers the tables)

ops = OperationSet("models")
