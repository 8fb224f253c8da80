"""The remote client's index of the operations matches their declarations."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.client import _wire_index, wire
from modelyard.core.operations import Operation
from modelyard.domains import operations


def _fields(op: Operation[Any, Any]) -> tuple[Any, ...]:
    return (
        op.name,
        op.method,
        op.path,
        op.permission,
        op.mutating,
        op.stream_in,
        op.stream_out,
        op.input,
        op.output,
    )


def test_the_index_file_is_up_to_date() -> None:
    assert wire.INDEX_PATH.read_text() == wire.render_index(), (
        "src/modelyard/client/_wire_index.py is stale: run `python -m modelyard.client.wire`"
    )


def test_every_declared_operation_is_built_the_same_from_the_index() -> None:
    declared = operations()
    assert set(_wire_index.INDEX) == set(declared)
    assert wire._current_index() is _wire_index.INDEX  # the sources hash as recorded
    for name, op in declared.items():
        built = wire.operation(name)
        assert built is not op, "built from the index, not taken from the declarations"
        assert _fields(built) == _fields(op), name


def test_an_operation_missing_from_the_index_comes_from_the_declarations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "tracking.search_runs"
    monkeypatch.delitem(_wire_index.INDEX, name)
    wire.operation.cache_clear()
    try:
        assert wire._current_index(), "the index in use"
        assert wire.operation(name) is operations()[name]
        with pytest.raises(KeyError):
            wire.operation("tracking.no_such_operation")
    finally:
        wire.operation.cache_clear()


def test_an_index_operation_has_no_function_to_run_here() -> None:
    op = wire.operation("datasets.list_datasets")
    with pytest.raises(RuntimeError, match="runs on the server"):
        op.func(None, None)


def test_a_stale_index_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # As after a declaration changed without `python -m modelyard.client.wire`: the
    # sources no longer hash to the index's digest, so every operation comes from the
    # declarations (slow, but never a wrong path or type).
    monkeypatch.setattr(_wire_index, "SOURCE_DIGEST", "0" * 64)
    wire._current_index.cache_clear()
    wire.operation.cache_clear()
    try:
        for name, op in operations().items():
            assert wire.operation(name) is op
    finally:
        wire._current_index.cache_clear()
        wire.operation.cache_clear()
