"""What the server serves: a loaded model, its input schema and the engine that runs it.

The server codes against the small protocols below rather than a concrete class, so a
``modelyard.flavors.LoadedModel``, a test double, or a SageMaker handler's model all fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from modelyard.serving.handler import Handler

Array = np.ndarray[Any, Any]
PredictFn = Callable[[Array], Array]


class TensorSpecLike(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> Sequence[int] | None: ...


class SignatureLike(Protocol):
    @property
    def inputs(self) -> Sequence[TensorSpecLike]: ...
    @property
    def outputs(self) -> Sequence[TensorSpecLike] | None: ...


class DescriptorLike(Protocol):
    @property
    def signature(self) -> SignatureLike | None: ...


class ModelLike(Protocol):
    """A loaded model: ``modelyard.flavors.LoadedModel`` satisfies it.

    ``predict`` takes a 2-D numeric array (rows = examples). ``predict_proba`` is looked
    up with ``getattr`` and may be absent, ``None``, or return ``None``.
    """

    @property
    def flavor(self) -> str: ...
    @property
    def descriptor(self) -> DescriptorLike: ...
    @property
    def native(self) -> Any: ...
    def predict(self, data: Any) -> Any: ...


_FLOAT32 = {"float32", "float16"}
_NUMERIC = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "bool"}


@dataclass(frozen=True)
class InputSchema:
    """The request shape the model accepts, derived from its signature.

    ``columns`` is set when the signature names one input per feature (a table);
    ``width`` is the number of features per row when known. With neither, any 2-D
    numeric payload is passed through and the model judges it.
    """

    columns: tuple[str, ...] | None = None
    width: int | None = None
    dtype: str = "float64"
    tensor_name: str = "input-0"
    numeric: bool = True
    column_dtypes: tuple[str, ...] | None = None

    @classmethod
    def from_signature(cls, signature: SignatureLike | None) -> InputSchema:
        if signature is None or not signature.inputs:
            return cls()
        inputs = list(signature.inputs)
        dtypes = {spec.dtype for spec in inputs}
        numeric = dtypes <= _NUMERIC
        # text (or mixed) inputs travel as object arrays; the model's flavor converts them
        dtype = ("float32" if dtypes <= _FLOAT32 else "float64") if numeric else "object"
        if len(inputs) == 1:
            spec = inputs[0]
            shape = list(spec.shape or [])
            name = spec.name or "input-0"
            if len(shape) >= 2:
                width = shape[-1] if shape[-1] > 0 else None
                return cls(width=width, dtype=dtype, tensor_name=name, numeric=numeric)
            if spec.name is not None:  # one named 1-D input: a table of one column
                return cls(
                    columns=(name,),
                    width=1,
                    dtype=dtype,
                    tensor_name=name,
                    numeric=numeric,
                    column_dtypes=(spec.dtype,),
                )
            return cls(dtype=dtype, tensor_name=name, numeric=numeric)
        columns = tuple(spec.name or f"column_{i}" for i, spec in enumerate(inputs))
        return cls(
            columns=columns,
            width=len(columns),
            dtype=dtype,
            numeric=numeric,
            column_dtypes=tuple(spec.dtype for spec in inputs),
        )

    def column_name(self, index: int) -> str:
        """How an error names column ``index`` (0-based): its signature name, or its number."""
        if self.columns is not None and index < len(self.columns):
            return f"column {index + 1} ({self.columns[index]!r})"
        return f"column {index + 1}"


@dataclass(frozen=True)
class OutputSpec:
    name: str
    dtype: str | None
    shape: list[int] | None


@dataclass
class Runtime:
    """Which engine answers predictions, and why (shown at ``GET /v2/models/{name}``)."""

    engine: str  # "onnxruntime" | "native" | "handler"
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"engine": self.engine, "reason": self.reason}


class Servable:
    """One model version ready to answer: predict functions, schema, engine decision.

    ``predict``/``predict_proba`` take a 2-D array of ``schema.dtype`` and return an array
    with one entry (or row) per input row. They are called from one worker thread at a
    time (see ``batching``), so the model needs no thread safety of its own.
    """

    def __init__(
        self,
        *,
        name: str,
        version: str,
        flavor: str,
        schema: InputSchema,
        outputs: list[OutputSpec],
        predict: PredictFn,
        predict_proba: PredictFn | None,
        runtime: Runtime,
        model: Any = None,
        handler: Handler | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.flavor = flavor
        self.schema = schema
        self.outputs = outputs
        self.predict = predict
        self.predict_proba = predict_proba
        self.runtime = runtime
        self.model = model
        self.handler = handler
