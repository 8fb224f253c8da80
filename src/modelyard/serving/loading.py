"""Turn a saved model folder (or a loaded model, or a handler script) into a Servable."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.flavors import MODEL_FILE, load_model, read_descriptor
from modelyard.serving import onnx_fastpath
from modelyard.serving.errors import SignatureMismatch
from modelyard.serving.handler import Handler
from modelyard.serving.model import (
    Array,
    InputSchema,
    ModelLike,
    OutputSpec,
    PredictFn,
    Runtime,
    Servable,
    SignatureLike,
)
from modelyard.serving.settings import ServerSettings

log = logging.getLogger("modelyard.serving")


def _outputs(signature: SignatureLike | None) -> list[OutputSpec]:
    specs = (signature.outputs or []) if signature is not None else []
    return [
        OutputSpec(
            spec.name or ("predict" if i == 0 else f"output-{i}"),
            spec.dtype,
            list(spec.shape or []) or None,
        )
        for i, spec in enumerate(specs)
    ]


# scikit-learn warns on every call when a model fitted on a DataFrame gets a numpy array;
# the server has already put the columns in signature order, so the warning is noise.
_FEATURE_NAMES_WARNING = "X does not have valid feature names"
_NUMERIC_KINDS = frozenset({"float64", "float32", "float16", "int64", "int32", "int16", "int8"})


def native_predictors(
    model: ModelLike, schema: InputSchema | None = None
) -> tuple[PredictFn, PredictFn | None]:
    """The model's own predict functions, taking the server's 2-D arrays.

    Numeric rows go to the model as they are. Rows of a signature with text columns
    travel as object arrays and reach the model as a dict of columns (numeric columns
    converted to their dtype), which every flavor reads as a table.
    """
    as_input = _columns_input(schema) if schema is not None else None

    def predict(x: Array) -> Array:
        data = as_input(x) if as_input is not None else x
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FEATURE_NAMES_WARNING)
            return np.asarray(model.predict(data))

    proba_method = getattr(model, "predict_proba", None)
    if not callable(proba_method):
        return predict, None

    def predict_proba(x: Array) -> Array:
        data = as_input(x) if as_input is not None else x
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FEATURE_NAMES_WARNING)
            result = proba_method(data)
        if result is None:
            raise InvalidInput(f"this {model.flavor} model gives no probabilities")
        return np.asarray(result)

    return predict, predict_proba


def _columns_input(schema: InputSchema) -> Callable[[Array], Any] | None:
    if schema.numeric or schema.columns is None:
        return None
    columns = schema.columns
    kinds = schema.column_dtypes or ("string",) * len(columns)

    def to_columns(x: Array) -> dict[str, Array]:
        out: dict[str, Array] = {}
        for i, (name, kind) in enumerate(zip(columns, kinds, strict=True)):
            column = x[:, i]
            if kind in _NUMERIC_KINDS:
                try:
                    column = column.astype(kind)
                except (TypeError, ValueError):
                    raise SignatureMismatch(
                        f"{schema.column_name(i)}: values are not all {kind}"
                    ) from None
            out[name] = column
        return out

    return to_columns


def servable_from_model(model: ModelLike, settings: ServerSettings) -> Servable:
    """Wrap a loaded model; take the ONNX Runtime fast path when allowed and verified."""
    signature = model.descriptor.signature
    schema = InputSchema.from_signature(signature)
    predict, predict_proba = native_predictors(model, schema)
    runtime = Runtime("native", "ONNX fast path disabled (--no-onnx)")
    if settings.use_onnx:
        decision = onnx_fastpath.try_fast_path(model, schema, settings, predict, predict_proba)
        runtime = Runtime(decision.engine, decision.reason)
        if decision.predict is not None:
            predict, predict_proba = decision.predict, decision.predict_proba
    return Servable(
        name=settings.name,
        version=settings.version,
        flavor=model.flavor,
        schema=schema,
        outputs=_outputs(signature),
        predict=predict,
        predict_proba=predict_proba,
        runtime=runtime,
        model=model,
    )


def handler_path(settings: ServerSettings) -> Path | None:
    """The handler script to use: ``--handler``, else a SageMaker-style ``code/inference.py``.

    ``code/inference.py`` is only picked up in a folder without a modelyard descriptor:
    a saved ``python``-flavor model keeps its own code in ``code/`` and is loaded by its
    flavor instead.
    """
    if settings.handler is not None:
        return settings.handler
    if settings.model_dir is None:
        return None
    script = settings.model_dir / "code" / "inference.py"
    if script.is_file() and not (settings.model_dir / MODEL_FILE).exists():
        return script
    return None


def servable_from_handler(handler: Handler, settings: ServerSettings) -> Servable:
    """Load the model with the script's ``model_fn`` (or the flavors) and wrap the script."""
    model_dir = settings.model_dir
    if handler.model_fn is not None:
        model: Any = handler.model_fn(str(model_dir) if model_dir is not None else "")
    elif model_dir is not None:
        model = load_model(model_dir)
    else:
        raise InvalidInput("a handler without model_fn needs --model-dir")
    descriptor = getattr(model, "descriptor", None)
    signature = getattr(descriptor, "signature", None)
    predict_fn = handler.predict_fn

    def predict(x: Array) -> Array:
        if predict_fn is not None:
            return np.asarray(predict_fn(x, model))
        return np.asarray(model.predict(x))

    return Servable(
        name=settings.name,
        version=settings.version,
        flavor=str(getattr(model, "flavor", "handler")),
        schema=InputSchema.from_signature(signature),
        outputs=_outputs(signature),
        predict=predict,
        predict_proba=None,
        runtime=Runtime(
            "handler", f"{handler.path.name} defines {', '.join(handler.defined()) or 'nothing'}"
        ),
        model=model,
        handler=handler,
    )


def load_servable(settings: ServerSettings) -> Servable:
    """Everything a replica does before it answers /ping with 200."""
    script = handler_path(settings)
    if script is not None:
        servable = servable_from_handler(Handler.load(script), settings)
    elif settings.model_dir is None:
        raise InvalidInput("no model: give --model-dir (a saved model folder) or --handler")
    elif (
        settings.onnx_dir is not None and (settings.onnx_dir / onnx_fastpath.RUNTIME_FILE).exists()
    ):
        servable = _servable_prepared(settings.model_dir, settings.onnx_dir, settings)
    else:
        servable = servable_from_model(load_model(settings.model_dir), settings)
    log.info(
        "model %s version %s (%s) loaded; engine %s: %s",
        servable.name,
        servable.version,
        servable.flavor,
        servable.runtime.engine,
        servable.runtime.reason,
    )
    return servable


def _servable_prepared(model_dir: Path, onnx_dir: Path, settings: ServerSettings) -> Servable:
    """Serve with the decision prepared once for all workers.

    On the ONNX path the worker never imports the model's framework (scikit-learn,
    XGBoost, LightGBM): only ONNX Runtime, which keeps an idle replica small.
    """
    decision = onnx_fastpath.load_decision(onnx_dir)
    runtime = Runtime(decision.engine, decision.reason)
    if decision.predict is None:
        servable = servable_from_model(load_model(model_dir), replace(settings, use_onnx=False))
        servable.runtime = runtime
        return servable
    descriptor = read_descriptor(model_dir)
    return Servable(
        name=settings.name,
        version=settings.version,
        flavor=descriptor.flavor,
        schema=InputSchema.from_signature(descriptor.signature),
        outputs=_outputs(descriptor.signature),
        predict=decision.predict,
        predict_proba=decision.predict_proba,
        runtime=runtime,
    )
