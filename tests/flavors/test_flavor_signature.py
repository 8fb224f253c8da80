"""Signature inference for every kind of input, and payload validation against one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from modelyard.errors import InvalidInput
from modelyard.flavors import Signature, TensorSpec, infer_signature, validate


def _columns(signature: Signature) -> list[tuple[str | None, str, list[int] | None]]:
    return [(s.name, s.dtype, s.shape) for s in signature.inputs]


def test_numpy_2d_is_one_tensor_with_any_batch() -> None:
    sig = infer_signature(np.zeros((4, 3), dtype=np.float32), np.zeros(4, dtype=np.int64))
    assert _columns(sig) == [(None, "float32", [-1, 3])]
    assert sig.outputs == [TensorSpec(name=None, dtype="int64", shape=[-1])]
    assert sig.column_names is None


def test_numpy_images_keep_their_inner_dimensions() -> None:
    sig = infer_signature(np.zeros((2, 8, 8, 3), dtype=np.uint8))
    assert _columns(sig) == [(None, "uint8", [-1, 8, 8, 3])]
    assert sig.outputs is None


def test_pandas_columns_in_order_with_dtypes() -> None:
    frame = pd.DataFrame(
        {"age": [30, 41], "income": [1.5, 2.0], "city": ["a", "b"], "vip": [True, False]}
    )
    sig = infer_signature(frame)
    assert _columns(sig) == [
        ("age", "int64", [-1]),
        ("income", "float64", [-1]),
        ("city", "string", [-1]),
        ("vip", "bool", [-1]),
    ]
    assert sig.column_names == ["age", "income", "city", "vip"]


def test_polars_and_arrow_tables() -> None:
    data = {"x": [1.0, 2.0], "n": [1, 2], "s": ["u", "v"]}
    expected = [("x", "float64", [-1]), ("n", "int64", [-1]), ("s", "string", [-1])]
    assert _columns(infer_signature(pl.DataFrame(data))) == expected
    assert _columns(infer_signature(pa.table(data))) == expected
    table = pa.table({"f": pa.array([1.0], pa.float32()), "i": pa.array([1], pa.int32())})
    assert _columns(infer_signature(table)) == [("f", "float32", [-1]), ("i", "int32", [-1])]


def test_records_and_dict_of_lists() -> None:
    records = [{"a": 1, "b": "x"}, {"a": 2.5, "b": "y", "c": True}]
    assert _columns(infer_signature(records)) == [
        ("a", "float64", [-1]),  # ints and floats together are floats
        ("b", "string", [-1]),
        ("c", "bool", [-1]),  # a key missing from a record is a missing value
    ]
    columns = {"a": [1, 2], "emb": np.zeros((2, 4), dtype=np.float32)}
    assert _columns(infer_signature(columns)) == [
        ("a", "int64", [-1]),
        ("emb", "float32", [-1, 4]),
    ]


@pytest.mark.parametrize(
    ("sample", "problem"),
    [
        ([], "empty"),
        (np.float64(3.0), "scalar"),
        ({}, "no columns"),
        ([{"a": 1}, {"a": "x"}], "mixes values"),
        ({1: [1, 2]}, "must be strings"),
    ],
)
def test_unusable_samples_are_refused(sample: Any, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        infer_signature(sample)


COLUMNS = Signature(
    inputs=[
        TensorSpec(name="age", dtype="int64", shape=[-1]),
        TensorSpec(name="income", dtype="float32", shape=[-1]),
        TensorSpec(name="city", dtype="string", shape=[-1]),
    ]
)


def test_valid_payloads_pass_in_every_form() -> None:
    records = [{"age": 3, "income": 1, "city": "x"}, {"age": 4.0, "income": 2.5, "city": "y"}]
    validate(COLUMNS, records)  # 4.0 is an integer; 1 is a float
    validate(COLUMNS, pd.DataFrame(records))
    validate(COLUMNS, pl.DataFrame({"age": [1], "income": [1.0], "city": ["z"]}))
    validate(COLUMNS, {"age": [1, 2], "income": [0.5, 1.5], "city": ["a", "b"]})
    validate(COLUMNS, {"age": 1, "income": 0.5, "city": "a"})  # one record


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"age": [1], "income": [1.0]}, "missing column\\(s\\) 'city'"),
        (
            {"age": [1], "income": [1.0], "city": ["a"], "zip": [1]},
            "unexpected column\\(s\\) 'zip'",
        ),
        ({"age": [1.5], "income": [1.0], "city": ["a"]}, "column 'age' has non-integer values"),
        ({"age": ["old"], "income": [1.0], "city": ["a"]}, "column 'age' holds string values"),
        ({"age": [1], "income": ["x"], "city": ["a"]}, "column 'income' holds string"),
        ({"age": [1], "income": [1.0], "city": [3]}, "column 'city' holds int64 values"),
        ({"age": [1, None], "income": [1.0, 2], "city": ["a", "b"]}, "missing values"),
        ({"age": [1, 2], "income": [1.0], "city": ["a"]}, "different lengths"),
        ({"age": [1, 2], "income": 1.0, "city": ["a", "b"]}, "'income' is a single value"),
        (np.zeros((2, 4)), "rows have 4 values, expected 3"),
        ("text", "expected columns"),
    ],
)
def test_invalid_payloads_name_the_problem(payload: Any, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        validate(COLUMNS, payload)


def test_positional_rows_are_checked_per_column() -> None:
    validate(COLUMNS.model_copy(update={"inputs": COLUMNS.inputs[:2]}), np.ones((3, 2)))
    with pytest.raises(InvalidInput, match="column 'age' has non-integer"):
        validate(COLUMNS.model_copy(update={"inputs": COLUMNS.inputs[:2]}), np.full((1, 2), 0.5))


def test_tensor_payloads_check_rank_sizes_and_dtype() -> None:
    tensor = Signature(inputs=[TensorSpec(dtype="float32", shape=[-1, 3])])
    validate(tensor, [[1, 2, 3], [4, 5, 6]])
    validate(tensor, np.ones((5, 3), dtype=np.float64))
    with pytest.raises(InvalidInput, match="size 2 on axis 1, expected 3"):
        validate(tensor, [[1, 2]])
    with pytest.raises(InvalidInput, match="1 dimension"):
        validate(tensor, [1, 2, 3])
    with pytest.raises(InvalidInput, match="holds string values"):
        validate(tensor, [["a", "b", "c"]])
    with pytest.raises(InvalidInput, match="input is empty"):
        validate(tensor, [])
    flags = Signature(inputs=[TensorSpec(dtype="bool", shape=[-1])])
    validate(flags, [0, 1, 1])
    with pytest.raises(InvalidInput, match="other than 0 and 1"):
        validate(flags, [0, 2])


def test_signature_rejects_impossible_shapes_and_dtypes() -> None:
    with pytest.raises(ValueError, match="below -1"):
        TensorSpec(dtype="float32", shape=[-2])
    with pytest.raises(ValueError):
        TensorSpec(dtype="complex128")  # type: ignore[arg-type]
