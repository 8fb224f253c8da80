"""Signatures from sample data, payload checks against a signature, and input conversion.

Accepted data, for inference, validation and ``predict``: NumPy arrays (and anything
``numpy.asarray`` takes, such as nested lists), pandas, polars and pyarrow tables,
a list of records (``list[dict]``) and a dict of columns (``dict[str, list | array]``).
The table libraries are recognised by their type's module and never imported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.errors import InvalidInput
from modelyard.flavors._descriptor import Signature, TensorSpec

__all__ = ["as_columns", "as_matrix", "dtype_of", "infer_signature", "validate"]

Array = npt.NDArray[Any]
_MAX_SHOWN = 10


def _module_root(value: Any) -> str:
    return type(value).__module__.split(".", 1)[0]


def _is_missing(value: Any) -> bool:
    if value is None or type(value).__name__ == "NAType":
        return True
    return isinstance(value, float) and value != value  # NaN


def as_columns(data: Any) -> dict[str, Array] | None:
    """Columns of tabular ``data`` as 1-D (or N-D) arrays, in order; ``None`` if not tabular.

    Tabular: pandas/polars DataFrames, pyarrow Tables and RecordBatches, a non-empty
    ``list`` of mappings (the union of their keys; a missing key is a missing value) and a
    mapping of names to sequences or arrays (or to single values: one record).
    """
    root = _module_root(data)
    kind = type(data).__name__
    if root == "pandas" and kind == "DataFrame":
        return {str(name): data[name].to_numpy() for name in data.columns}
    if root == "polars" and kind == "DataFrame":
        return {str(name): data[name].to_numpy() for name in data.columns}
    if root == "pyarrow" and kind in ("Table", "RecordBatch"):
        return {
            str(name): data.column(i).to_numpy(zero_copy_only=False)
            for i, name in enumerate(data.schema.names)
        }
    if isinstance(data, Mapping):
        if data and all(_is_scalar(v) for v in data.values()):
            data = {name: [value] for name, value in data.items()}  # one record
        columns: dict[str, Array] = {}
        for name, values in data.items():
            if not isinstance(name, str):
                raise InvalidInput(f"column names must be strings, got {name!r}")
            columns[name] = _array(values, name)
            if columns[name].ndim == 0:
                raise InvalidInput(
                    f"column {name!r} is a single value while other columns are lists; "
                    "give every column as a list, or one record with single values"
                )
        return columns
    if isinstance(data, list) and data and all(isinstance(row, Mapping) for row in data):
        names: dict[str, None] = {}
        for row in data:
            for name in row:
                if not isinstance(name, str):
                    raise InvalidInput(f"record keys must be strings, got {name!r}")
                names.setdefault(name, None)
        return {name: _array([row.get(name) for row in data], name) for name in names}
    return None


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bytes, int, float, bool, np.generic))


def _array(values: Any, name: str | None) -> Array:
    """``values`` as an array; a flat list keeps each value's own type (no coercion of
    ``[1, "x"]`` to strings) and becomes a typed array when its values agree."""
    if isinstance(values, (list, tuple)) and not any(
        isinstance(v, (list, tuple, np.ndarray)) for v in values
    ):
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        kind = _object_dtype(array, name)
        missing = any(_is_missing(v) for v in values)
        if kind == "float64" or (kind == "int64" and missing):
            return np.asarray([np.nan if _is_missing(v) else v for v in values], np.float64)
        if kind in ("int64", "bool") and not missing:
            return np.asarray(values, dtype=np.int64 if kind == "int64" else np.bool_)
        return array
    try:
        return np.asarray(values)
    except (ValueError, TypeError) as exc:
        where = f"column {name!r}" if name is not None else "input"
        raise InvalidInput(f"{where} is not a regular array: {exc}") from None


def dtype_of(array: Array, name: str | None = None) -> str:
    """The signature dtype of ``array``; object arrays are typed by their non-missing values."""
    kind = array.dtype.kind
    if kind == "b":
        return "bool"
    if kind in "iu":
        return str(array.dtype)
    if kind == "f":
        return "float64" if array.dtype.itemsize > 8 else str(array.dtype)
    if kind == "U":
        return "string"
    if kind == "S":
        return "bytes"
    if kind == "M":
        return "datetime"
    if kind == "O":
        return _object_dtype(array, name)
    where = f"column {name!r}" if name is not None else "input"
    raise InvalidInput(
        f"{where} has NumPy dtype {array.dtype}, which a signature cannot describe; "
        "use numbers, booleans, strings, bytes or datetimes"
    )


def _object_dtype(array: Array, name: str | None) -> str:
    kinds: set[str] = set()
    for value in array.ravel():
        if _is_missing(value):
            continue
        if isinstance(value, (bool, np.bool_)):
            kinds.add("bool")
        elif isinstance(value, (int, np.integer)):
            kinds.add("int64")
        elif isinstance(value, (float, np.floating)):
            kinds.add("float64")
        elif isinstance(value, str):
            kinds.add("string")
        elif isinstance(value, bytes):
            kinds.add("bytes")
        else:
            kinds.add(type(value).__name__)
    if not kinds:
        return "float64"  # only missing values: NaN-able numbers
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= {"int64", "float64"}:
        return "float64"
    where = f"column {name!r}" if name is not None else "input"
    raise InvalidInput(f"{where} mixes values of types {', '.join(sorted(kinds))}")


def _shape(array: Array) -> list[int]:
    return [-1, *(int(d) for d in array.shape[1:])]


def _specs(data: Any, what: str) -> list[TensorSpec]:
    columns = as_columns(data)
    if columns is not None:
        if not columns:
            raise InvalidInput(f"sample {what} has no columns")
        return [
            TensorSpec(name=name, dtype=dtype_of(values, name), shape=_shape(values))
            for name, values in columns.items()
        ]
    if isinstance(data, (list, tuple)) and not data:
        raise InvalidInput(f"sample {what} is empty")
    array = _array(data, None)
    if array.ndim == 0:
        raise InvalidInput(f"sample {what} is a scalar; give a batch (an array or a table)")
    return [TensorSpec(name=None, dtype=dtype_of(array), shape=_shape(array))]


def infer_signature(sample_input: Any, sample_output: Any = None) -> Signature:
    """The signature of a model that reads ``sample_input`` (and returns ``sample_output``).

    A 2-D array gives one tensor ``[-1, columns]``; a table, records or a dict of lists
    give one ``[-1]`` column per name, in order. The first dimension is always ``-1``.
    Raises :class:`InvalidInput` for empty, scalar or mixed-type samples.
    """
    inputs = _specs(sample_input, "input")
    outputs = None if sample_output is None else _specs(sample_output, "output")
    return Signature(inputs=inputs, outputs=outputs)


_INTS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_FLOATS = {"float16", "float32", "float64"}


def _check_castable(values: Array, target: str, where: str) -> None:
    """Raise InvalidInput when ``values`` cannot become ``target`` without changing meaning."""
    if values.size == 0:
        return
    source = dtype_of(values, None)
    if source == target:
        has_missing = values.dtype == object and any(_is_missing(v) for v in values.ravel())
        if has_missing and target not in _FLOATS:
            raise InvalidInput(f"{where} has missing values, which {target} cannot hold")
        return
    if target in _FLOATS and source in _INTS | _FLOATS | {"bool"}:
        return
    if target in _INTS | {"bool"} and source in _INTS | _FLOATS | {"bool"}:
        if values.dtype == object:
            present = [v for v in values.ravel() if not _is_missing(v)]
            if len(present) != values.size:
                raise InvalidInput(f"{where} has missing values, which {target} cannot hold")
            numbers = np.asarray(present, dtype=np.float64)
        else:
            numbers = values.astype(np.float64)
        if np.any(np.isnan(numbers)):
            raise InvalidInput(f"{where} has missing values, which {target} cannot hold")
        if not np.all(np.isfinite(numbers)) or not np.all(numbers == np.round(numbers)):
            raise InvalidInput(f"{where} has non-integer values, which {target} cannot hold")
        if target == "bool" and not np.all(np.isin(numbers, (0, 1))):
            raise InvalidInput(f"{where} has values other than 0 and 1, expected bool")
        if target.startswith("uint") and np.any(numbers < 0):
            raise InvalidInput(f"{where} has negative values, which {target} cannot hold")
        return
    if target in ("bytes", "datetime") and source == "string":
        return
    raise InvalidInput(f"{where} holds {source} values, which cannot be used as {target}")


def _check_shape(values: Array, spec: TensorSpec, where: str) -> None:
    if spec.shape is None:
        return
    if values.ndim != len(spec.shape):
        raise InvalidInput(
            f"{where} has {values.ndim} dimension(s) {list(values.shape)}, "
            f"expected {len(spec.shape)} {spec.shape}"
        )
    for axis, (got, want) in enumerate(zip(values.shape, spec.shape, strict=True)):
        if want != -1 and got != want:
            raise InvalidInput(f"{where} has size {got} on axis {axis}, expected {want}")


def _show(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_SHOWN])
    return shown + (f" and {len(names) - _MAX_SHOWN} more" if len(names) > _MAX_SHOWN else "")


def validate(signature: Signature, data: Any) -> None:
    """Check ``data`` against ``signature``; :class:`InvalidInput` naming the first problem.

    Named inputs need exactly those columns (missing and unexpected names are both
    refused), one length for all of them, and values castable to each column's dtype
    without changing meaning (integers as floats yes; 1.5 as an integer, text as a
    number, missing values as integers no). A 2-D array is accepted for named 1-D
    inputs as positional columns. A single unnamed input is checked for its number of
    dimensions, its fixed sizes and its dtype.
    """
    names = signature.column_names
    columns = as_columns(data)
    if names is not None:
        if columns is None:
            array = _array(data, None)
            if array.ndim == 2 and all(s.shape in (None, [-1]) for s in signature.inputs):
                if array.shape[1] != len(names):
                    raise InvalidInput(
                        f"rows have {array.shape[1]} values, expected {len(names)} "
                        f"(columns {_show(names)})"
                    )
                columns = {name: array[:, j] for j, name in enumerate(names)}
            else:
                raise InvalidInput(
                    f"expected columns {_show(names)} (a table, a list of records or a dict "
                    f"of lists), got {type(data).__name__}"
                )
        missing = [n for n in names if n not in columns]
        if missing:
            raise InvalidInput(f"missing column(s) {_show(missing)}; expected {_show(names)}")
        unexpected = [n for n in columns if n not in names]
        if unexpected:
            raise InvalidInput(f"unexpected column(s) {_show(unexpected)}; expected {_show(names)}")
        lengths = {len(columns[n]) for n in names}
        if len(lengths) > 1:
            raise InvalidInput(f"columns have different lengths {sorted(lengths)}")
        for spec in signature.inputs:
            values = columns[str(spec.name)]
            where = f"column {spec.name!r}"
            _check_shape(values, spec, where)
            _check_castable(values, spec.dtype, where)
        return
    if len(signature.inputs) != 1:
        raise InvalidInput(
            f"the signature has {len(signature.inputs)} unnamed inputs; only one unnamed "
            "input (a tensor) or named columns can be checked"
        )
    spec = signature.inputs[0]
    if columns is not None:
        array = as_matrix(data, None)
    else:
        if isinstance(data, (list, tuple)) and not data:
            raise InvalidInput("input is empty")
        array = _array(data, None)
    _check_shape(array, spec, "input")
    _check_castable(array, spec.dtype, "input")


def as_matrix(data: Any, names: Sequence[str] | None, dtype: Any = None) -> Array:
    """A 2-D (or N-D) array of ``data``; tabular data is ordered by ``names`` when given.

    Raises :class:`InvalidInput` for a missing column or values that do not convert.
    """
    columns = as_columns(data)
    try:
        if columns is None:
            array = np.asarray(data)
            return array if dtype is None else array.astype(dtype)
        order = list(names) if names else list(columns)
        missing = [n for n in order if n not in columns]
        if missing:
            raise InvalidInput(f"missing column(s) {_show(missing)}; expected {_show(order)}")
        parts = [columns[n] for n in order]
        if dtype is not None:
            parts = [p.astype(dtype) for p in parts]
        return np.column_stack(parts) if parts else np.empty((0, 0))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"input does not convert to a numeric matrix: {exc}") from None
