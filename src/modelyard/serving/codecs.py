"""Request bodies to numpy rows, and predictions to response bodies.

Content types read: ``text/csv``, ``application/json``, ``application/jsonlines`` and
``application/x-npy``; the same four are written, chosen by ``Accept``. Parsing is plain
Python + numpy (no pandas): a one-row request costs one ``orjson.loads`` or one
``str.split`` and one ``numpy.asarray``. A problem is only diagnosed (which line, which
column) after the fast conversion has failed, so good requests pay nothing for it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from modelyard.errors import InvalidInput, UnsupportedMediaType
from modelyard.serving.errors import NotAcceptable, SignatureMismatch
from modelyard.serving.model import Array, InputSchema

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"

_CONTENT_TYPES = {
    "text/csv": CSV,
    "application/csv": CSV,
    "application/json": JSON,
    "application/jsonlines": JSONLINES,
    "application/jsonl": JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "application/x-ndjson": JSONLINES,
    "application/x-npy": NPY,
    "application/npy": NPY,
}
READABLE = (CSV, JSON, JSONLINES, NPY)
_ROW_KEYS = ("instances", "inputs", "features", "data")


def media_type(header: str | None) -> str | None:
    """The canonical content type named by a ``Content-Type`` header, or None if unknown."""
    if not header:
        return None
    return _CONTENT_TYPES.get(header.split(";", 1)[0].strip().lower())


def require_content_type(header: str | None) -> str:
    kind = media_type(header)
    if kind is None:
        raise UnsupportedMediaType(
            f"Content-Type {header or '(none)'!r} is not supported; "
            f"send one of {', '.join(READABLE)}"
        )
    return kind


def choose_accept(header: str | None) -> str:
    """The reply format for an ``Accept`` header: the supported type with the highest q.

    A missing header, ``*/*`` and ``application/*`` mean JSON.
    """
    if not header:
        return JSON
    best: tuple[float, int, str] | None = None
    for position, part in enumerate(header.split(",")):
        pieces = part.split(";")
        name = pieces[0].strip().lower()
        quality = 1.0
        for param in pieces[1:]:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        kind = JSON if name in ("*/*", "application/*", "") else _CONTENT_TYPES.get(name)
        if kind is None and name == "text/*":
            kind = CSV
        if kind is None:
            continue
        candidate = (-quality, position, kind)
        if best is None or candidate < best:
            best = candidate
    if best is None:
        raise NotAcceptable(
            f"Accept {header!r} names no supported format; use one of {', '.join(READABLE)}"
        )
    return best[2]


# --------------------------------------------------------------------------- decoding


def decode(body: bytes, content_type: str, schema: InputSchema) -> Array:
    """A 2-D array of ``schema.dtype`` from a request body (``content_type`` canonical).

    Raises ``InvalidInput`` (400) for a body that does not parse, naming the line or
    field, and ``SignatureMismatch`` (422) for one that parses but does not fit the
    signature, naming the column.
    """
    if not body.strip():
        raise InvalidInput("the request body is empty; send at least one row")
    if content_type == JSON:
        rows = _json_rows(_loads(body, None), schema)
    elif content_type == CSV:
        rows = _csv_rows(body, schema)
    elif content_type == JSONLINES:
        rows = _jsonlines_rows(body, schema)
    else:
        return check_matrix(_load_npy(body), schema)
    return to_matrix(rows, schema)


def _loads(data: bytes, line: int | None) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        where = f"line {line}: " if line is not None else ""
        raise InvalidInput(f"malformed JSON: {where}{exc}") from None


def _json_rows(value: Any, schema: InputSchema) -> list[Any]:
    if isinstance(value, dict):
        key = next((k for k in _ROW_KEYS if k in value), None)
        if key is None:
            if schema.columns and set(value) <= set(schema.columns):
                return [_object_row(value, schema, 1)]
            raise InvalidInput(
                f"JSON object needs one of the keys {', '.join(_ROW_KEYS)} "
                f"(got {', '.join(sorted(map(str, value))[:5]) or 'no keys'})"
            )
        value = value[key]
        if isinstance(value, dict):  # columnar: {"a": [1, 2], "b": [3, 4]}
            return _columnar_rows(value, schema, key)
    if not isinstance(value, list):
        raise InvalidInput("JSON body must be a list of rows or an object with 'instances'")
    if not value:
        raise InvalidInput("the request holds no rows")
    first = value[0]
    if not isinstance(first, list | dict):
        return [value]  # one flat row: [1.0, 2.0, 3.0]
    if isinstance(first, dict):
        return [_object_row(item, schema, i + 1) for i, item in enumerate(value)]
    return value


def _object_row(item: Any, schema: InputSchema, number: int) -> list[Any]:
    if not isinstance(item, dict):
        raise InvalidInput(f"row {number}: expected an object keyed by column name")
    if schema.columns is None:
        raise SignatureMismatch(
            "rows keyed by column name need a model signature with column names; "
            "this model has none, so send each row as a list of numbers"
        )
    missing = [c for c in schema.columns if c not in item]
    if missing:
        raise SignatureMismatch(
            f"row {number}: missing column {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            details={"missing": missing, "expected": list(schema.columns)},
        )
    if len(item) != len(schema.columns):
        unknown = sorted(str(k) for k in item if k not in schema.columns)
        raise SignatureMismatch(
            f"row {number}: unknown column {unknown[0]!r}; "
            f"the model takes {', '.join(schema.columns)}",
            details={"unknown": unknown, "expected": list(schema.columns)},
        )
    return [item[c] for c in schema.columns]


def _columnar_rows(value: dict[str, Any], schema: InputSchema, key: str) -> list[Any]:
    if schema.columns is None:
        raise SignatureMismatch(f"'{key}' keyed by column name needs a signature with columns")
    missing = [c for c in schema.columns if c not in value]
    if missing:
        raise SignatureMismatch(f"missing column {missing[0]!r}", details={"missing": missing})
    unknown = sorted(str(k) for k in value if k not in schema.columns)
    if unknown:
        raise SignatureMismatch(f"unknown column {unknown[0]!r}", details={"unknown": unknown})
    columns = [value[c] for c in schema.columns]
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
        raise InvalidInput(f"'{key}' columns must be lists of the same length")
    return [list(row) for row in zip(*columns, strict=True)]


def _csv_rows(body: bytes, schema: InputSchema) -> list[Any]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"CSV body is not UTF-8 (byte {exc.start})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    rows = [line.split(",") for line in lines]
    if schema.columns and rows and _is_header(rows[0], schema.columns):
        header = [f.strip().strip('"') for f in rows[0]]
        order = [header.index(c) for c in schema.columns]
        rows = [[row[i] if i < len(row) else "" for i in order] for row in rows[1:]]
        if not rows:
            raise InvalidInput("CSV body holds a header but no rows")
    return [[f.strip().strip('"') for f in row] for row in rows]


def _is_header(fields: list[str], columns: Sequence[str]) -> bool:
    names = [f.strip().strip('"') for f in fields]
    return sorted(names) == sorted(columns)


def _jsonlines_rows(body: bytes, schema: InputSchema) -> list[Any]:
    rows: list[Any] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        value = _loads(line, number)
        if isinstance(value, dict):
            key = next((k for k in _ROW_KEYS if k in value), None)
            if key is not None and not (schema.columns and key in schema.columns):
                value = value[key]
            else:
                rows.append(_object_row(value, schema, number))
                continue
        if not isinstance(value, list):
            raise InvalidInput(f"line {number}: expected a row (a JSON list or object)")
        if value and isinstance(value[0], list):
            rows.extend(value)
        else:
            rows.append(value)
    return rows


def _load_npy(body: bytes) -> Array:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidInput(f"body is not a readable .npy array: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise InvalidInput("body is not a single .npy array")
    return array


def check_matrix(array: Array, schema: InputSchema) -> Array:
    if array.dtype.kind not in ("biuf" if schema.numeric else "biufUSO"):
        raise SignatureMismatch(
            f"the array's dtype {array.dtype} is not numeric; the model takes {schema.dtype}"
        )
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise SignatureMismatch(f"expected a 2-D array (rows x features), got shape {array.shape}")
    if array.shape[0] == 0:
        raise InvalidInput("the request holds no rows")
    if schema.width is not None and array.shape[1] != schema.width:
        raise SignatureMismatch(
            f"each row must have {schema.width} features, got {array.shape[1]}",
            details={"expected": schema.width, "got": int(array.shape[1])},
        )
    return np.ascontiguousarray(array, dtype=schema.dtype)


def to_matrix(rows: list[Any], schema: InputSchema) -> Array:
    """Rows (lists of numbers, or of numeric strings from CSV) as a checked 2-D array.

    ``null`` (JSON) becomes NaN, the usual marker of a missing value.
    """
    if not rows:
        raise InvalidInput("the request holds no rows")
    try:
        array = np.asarray(rows, dtype=schema.dtype)
    except (ValueError, TypeError):
        _diagnose(rows, schema)
        raise InvalidInput("rows could not be read as numbers") from None
    if array.ndim != 2:
        _diagnose(rows, schema)
        raise SignatureMismatch(f"expected rows of numbers, got an array of shape {array.shape}")
    if schema.width is not None and array.shape[1] != schema.width:
        raise SignatureMismatch(
            f"row 1: expected {schema.width} features, got {array.shape[1]}",
            details={"expected": schema.width, "got": int(array.shape[1])},
        )
    return array


def _diagnose(rows: list[Any], schema: InputSchema) -> None:
    """Raise the error naming the first bad row and column (the slow path)."""
    width = schema.width if schema.width is not None else None
    for r, row in enumerate(rows, start=1):
        if not isinstance(row, list):
            raise InvalidInput(f"row {r}: expected a list of numbers, got {_kind(row)}")
        if width is None:
            width = len(row)
        if len(row) != width:
            raise SignatureMismatch(
                f"row {r}: expected {width} features, got {len(row)}",
                details={"row": r, "expected": width, "got": len(row)},
            )
        for c, value in enumerate(row):
            if schema.numeric and not _is_number(value):
                raise SignatureMismatch(
                    f"row {r}, {schema.column_name(c)}: {value!r} is not a number "
                    f"(the model takes {schema.dtype})",
                    details={"row": r, "column": c + 1},
                )


def _is_number(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


# --------------------------------------------------------------------------- encoding


def encode(predictions: Array, accept: str) -> bytes:
    """The body of a reply holding one prediction per input row, in format ``accept``."""
    if accept == JSON:
        return _dumps({"predictions": predictions})
    if accept == JSONLINES:
        return b"\n".join(_dumps(row) for row in predictions) + b"\n"
    if accept == CSV:
        if predictions.ndim == 1:
            lines = [_csv_value(v) for v in predictions.tolist()]
        else:
            lines = [",".join(_csv_value(v) for v in row) for row in predictions.tolist()]
        return ("\n".join(lines) + "\n").encode()
    buffer = io.BytesIO()
    array = predictions if predictions.dtype.kind != "O" else predictions.astype(str)
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _csv_value(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return orjson.dumps(_plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """JSON bytes for a reply body; numpy arrays and scalars allowed anywhere inside."""
    return _dumps(value)
