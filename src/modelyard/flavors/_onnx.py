"""ONNX models, run with ONNX Runtime on the CPU.

``predict`` feeds the data to the graph's input (by name when the graph has several
inputs and the data has columns of those names; otherwise as one matrix to the first
input, cast to its element type) and returns the first output. Where the graph has a
second output (scikit-learn classifiers converted by skl2onnx), ``predict_proba``
returns it as a matrix with one column per class.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.flavors._base import (
    Flavor,
    LoadedModel,
    LoadOptions,
    Saved,
    SaveOptions,
    json_classes,
    one_file,
    require,
)
from modelyard.flavors._descriptor import ModelDescriptor, Signature, TensorSpec
from modelyard.flavors._signature import as_columns, as_matrix

FILE = "model.onnx"
_INSTALL = "pip install 'modelyard[onnx]' (onnx and onnxruntime)"
_ORT_TYPES = {
    "tensor(float)": ("float32", np.float32),
    "tensor(double)": ("float64", np.float64),
    "tensor(int64)": ("int64", np.int64),
    "tensor(int32)": ("int32", np.int32),
    "tensor(int16)": ("int16", np.int16),
    "tensor(int8)": ("int8", np.int8),
    "tensor(uint8)": ("uint8", np.uint8),
    "tensor(bool)": ("bool", np.bool_),
    "tensor(string)": ("string", np.object_),
    "tensor(float16)": ("float16", np.float16),
}


def _is_path(model: Any) -> bool:
    return isinstance(model, (str, Path)) and str(model).endswith(".onnx")


class OnnxFlavor(Flavor):
    name = "onnx"
    libraries = ("onnx", "onnxruntime")

    def matches(self, model: Any) -> bool:
        return _is_path(model) or (
            type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")
        )

    def save(self, model: Any, folder: Path, options: SaveOptions) -> Saved:
        if _is_path(model):
            source = Path(model)
            if not source.is_file():
                raise InvalidInput(f"ONNX file {str(source)!r} does not exist")
            shutil.copyfile(source, folder / FILE)
        else:
            onnx = require("onnx", self.name, _INSTALL)
            if not isinstance(model, onnx.ModelProto):
                raise InvalidInput(
                    f"the onnx flavor saves an onnx.ModelProto or a .onnx file, "
                    f"not {type(model).__name__}"
                )
            onnx.save_model(model, str(folder / FILE))
        session = _session(folder / FILE)
        predict, proba = _predictors(session)
        classes = None
        if proba is not None and options.sample_input is not None:
            classes = classes_of(session, options.sample_input)
        return Saved(
            framework=self.versions(),
            task="classification" if classes else None,
            classes=classes,
            predict=predict,
            signature=_graph_signature(session),
        )

    def load(self, folder: Path, descriptor: ModelDescriptor, options: LoadOptions) -> LoadedModel:
        session = _session(one_file(folder, descriptor, [FILE]))
        signature = descriptor.signature
        predict, proba = _predictors(session, signature.column_names if signature else None)
        return LoadedModel(descriptor, session, predict, proba, path=folder)


def _session(path: Path) -> Any:
    ort = require("onnxruntime", "onnx", _INSTALL)
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped Fail/InvalidGraph errors
        raise InvalidInput(f"{path.name} is not a loadable ONNX model: {exc}") from None


def _graph_signature(session: Any) -> Signature:
    def spec(arg: Any) -> TensorSpec | None:
        if arg.type not in _ORT_TYPES:
            return None
        shape = [d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])]
        return TensorSpec(name=arg.name, dtype=_ORT_TYPES[arg.type][0], shape=shape or None)

    inputs = [spec(a) for a in session.get_inputs()]
    outputs = [spec(a) for a in session.get_outputs()]
    return Signature(
        inputs=[s for s in inputs if s is not None],
        outputs=[s for s in outputs if s is not None] or None,
    )


def _feed(session: Any, data: Any, order: list[str] | None = None) -> dict[str, Any]:
    inputs = session.get_inputs()
    columns = as_columns(data)
    if len(inputs) > 1:
        if columns is None or any(arg.name not in columns for arg in inputs):
            names = ", ".join(repr(arg.name) for arg in inputs)
            raise InvalidInput(f"this ONNX model has inputs {names}; give columns of those names")
        feed = {}
        for arg in inputs:
            values = columns[arg.name]
            dtype = _ORT_TYPES.get(arg.type, ("", None))[1]
            values = values.astype(dtype) if dtype is not None else values
            feed[arg.name] = values.reshape(-1, 1) if values.ndim == 1 else values
        return feed
    first = inputs[0]
    dtype = _ORT_TYPES.get(first.type, ("", None))[1]
    if columns is not None and order and all(n in columns for n in order):
        return {first.name: as_matrix(columns, order, dtype)}
    return {first.name: as_matrix(data, None, dtype)}


def _as_proba(value: Any) -> tuple[Any, list[Any] | None]:
    """A class-probability output as a matrix; a ZipMap (list of dicts) keeps its keys."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = list(value[0])
        return np.asarray([[row[k] for k in keys] for row in value]), keys
    return np.asarray(value), None


def _predictors(session: Any, order: list[str] | None = None) -> tuple[Any, Any]:
    outputs = [arg.name for arg in session.get_outputs()]

    def run(data: Any, names: list[str]) -> list[Any]:
        try:
            return list(session.run(names, _feed(session, data, order)))
        except InvalidInput:
            raise
        except Exception as exc:  # shape/type mismatches come back as ORT's own errors
            raise InvalidInput(f"the ONNX model refused the input: {exc}") from None

    def predict(data: Any) -> Any:
        return np.asarray(run(data, outputs[:1])[0])

    if len(outputs) < 2:
        return predict, None

    def proba(data: Any) -> Any:
        return _as_proba(run(data, outputs[1:2])[0])[0]

    return predict, proba


def classes_of(session: Any, sample: Any) -> list[Any] | None:
    """Class labels from a ZipMap probability output, when the graph has one."""
    outputs = session.get_outputs()
    if len(outputs) < 2:
        return None
    value = session.run([outputs[1].name], _feed(session, sample))[0]
    keys = _as_proba(value)[1]
    return json_classes(keys) if keys is not None else None
