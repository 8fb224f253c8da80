"""The Open Inference Protocol (KServe v2) REST messages: metadata, infer request, response."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.serving.codecs import check_matrix
from modelyard.serving.errors import SignatureMismatch
from modelyard.serving.model import Array, Servable

PROTOCOL = "v2"
PROBA = "predict_proba"

_DATATYPES: dict[str, str] = {
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "BOOL": "bool",
}
_FROM_DTYPE = {v: k for k, v in _DATATYPES.items()} | {"string": "BYTES", "object": "BYTES"}


def datatype(dtype: str | None) -> str:
    """The v2 datatype name for a numpy / signature dtype name (BYTES for text)."""
    if dtype is None:
        return "FP64"
    return _FROM_DTYPE.get(dtype, "BYTES")


def predict_name(servable: Servable) -> str:
    return servable.outputs[0].name if servable.outputs else "predict"


def model_metadata(servable: Servable) -> dict[str, Any]:
    """``GET /v2/models/{name}``, with the extension field ``runtime`` (engine + reason)."""
    schema = servable.schema
    if schema.columns is not None:
        kinds = schema.column_dtypes or (schema.dtype,) * len(schema.columns)
        inputs = [
            {"name": c, "datatype": datatype(k), "shape": [-1]}
            for c, k in zip(schema.columns, kinds, strict=True)
        ]
    else:
        width = schema.width if schema.width is not None else -1
        inputs = [
            {"name": schema.tensor_name, "datatype": datatype(schema.dtype), "shape": [-1, width]}
        ]
    outputs: list[dict[str, Any]] = [
        {"name": o.name, "datatype": datatype(o.dtype), "shape": o.shape or [-1]}
        for o in servable.outputs
    ] or [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    if servable.predict_proba is not None:
        outputs.append({"name": PROBA, "datatype": "FP64", "shape": [-1, -1]})
    return {
        "name": servable.name,
        "versions": [servable.version],
        "platform": servable.flavor,
        "inputs": inputs,
        "outputs": outputs,
        "runtime": servable.runtime.to_dict(),
    }


def parse_infer(body: Any, servable: Servable) -> tuple[Array, list[str], str | None]:
    """The rows, the output names asked for, and the request's ``id`` from a v2 request."""
    if not isinstance(body, dict):
        raise InvalidInput("an inference request is a JSON object with 'inputs'")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    tensors = [_tensor(t, i, servable.schema.numeric) for i, t in enumerate(inputs)]
    rows = _rows(tensors, servable)
    wanted = _wanted_outputs(body.get("outputs"), servable)
    return rows, wanted, request_id


def _tensor(raw: Any, index: int, numeric: bool) -> tuple[str, Array]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"inputs[{index}] must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}].name must be a non-empty string")
    shape = raw.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers")
    kind = raw.get("datatype")
    if kind == "BYTES" and numeric:
        raise SignatureMismatch(f"input {name!r}: BYTES given, but the model takes numbers")
    dtype = _DATATYPES.get(kind) if isinstance(kind, str) else None
    if kind == "BYTES":
        dtype = "object"
    if dtype is None:
        raise InvalidInput(
            f"input {name!r}: datatype {kind!r} is not one of {', '.join(_DATATYPES)}"
        )
    data = raw.get("data")
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r}: data must be a list")
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError):
        raise SignatureMismatch(f"input {name!r}: data is not all {kind}") from None
    expected = int(np.prod(shape))
    if array.size != expected:
        raise InvalidInput(
            f"input {name!r}: shape {shape} needs {expected} values, data holds {array.size}"
        )
    return name, array.reshape(shape)


def _rows(tensors: list[tuple[str, Array]], servable: Servable) -> Array:
    schema = servable.schema
    names = [n for n, _ in tensors]
    if schema.columns is not None and len(schema.columns) > 1:
        missing = [c for c in schema.columns if c not in names]
        unknown = [n for n in names if n not in schema.columns]
        if unknown or missing:
            raise SignatureMismatch(
                f"unknown input {unknown[0]!r}" if unknown else f"missing input {missing[0]!r}",
                details={"expected": list(schema.columns)},
            )
        by_name = dict(tensors)
        columns = []
        for c in schema.columns:
            part = by_name[c]
            if part.ndim == 2 and part.shape[1] == 1:
                part = part[:, 0]
            if part.ndim != 1:
                raise SignatureMismatch(f"input {c!r}: expected shape [rows] or [rows, 1]")
            columns.append(part)
        if len({len(c) for c in columns}) != 1:
            raise SignatureMismatch("inputs hold different numbers of rows")
        return check_matrix(np.column_stack(columns), schema)
    if len(tensors) != 1:
        raise SignatureMismatch(f"the model takes one input tensor, got {len(tensors)}")
    name, array = tensors[0]
    if name != schema.tensor_name and schema.columns is None and schema.width is not None:
        raise SignatureMismatch(
            f"unknown input {name!r}; the model's input is {schema.tensor_name!r}"
        )
    if array.ndim == 1:
        array = array.reshape(-1, 1) if schema.width == 1 else array.reshape(1, -1)
    return check_matrix(array, schema)


def _wanted_outputs(raw: Any, servable: Servable) -> list[str]:
    default = predict_name(servable)
    if raw is None:
        return [default]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("'outputs' must be a non-empty list of {\"name\": ...}")
    known = [default] + ([PROBA] if servable.predict_proba is not None else [])
    wanted = []
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in known:
            raise InvalidInput(f"unknown output {name!r}; this model gives {', '.join(known)}")
        wanted.append(str(name))
    return wanted


def output_tensor(name: str, values: Array) -> dict[str, Any]:
    values = np.asarray(values)
    kind = values.dtype.kind
    if kind in "OUS":
        data: Any = [str(v) for v in values.ravel().tolist()]
        dtype_name = "BYTES"
    else:
        data = values.ravel()
        dtype_name = datatype(str(values.dtype))
    return {"name": name, "datatype": dtype_name, "shape": list(values.shape), "data": data}
