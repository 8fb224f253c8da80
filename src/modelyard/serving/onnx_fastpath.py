"""The ONNX Runtime fast path, decided once when a replica loads its model.

scikit-learn models are converted with ``skl2onnx``, XGBoost and LightGBM models with
``onnxmltools`` (whose converters are also registered with ``skl2onnx``, so a scikit-learn
pipeline ending in an XGBoost or LightGBM estimator converts too). Both the converted
and the native model then predict a verification sample: the rows given by
``ServerSettings.onnx_sample`` (a ``.npy`` or headerless ``.csv`` file), or else 64
seeded random rows of the signature's width. ONNX Runtime is used only if the class
labels are equal and every number (regression outputs, probabilities) is within
``onnx_rtol``/``onnx_atol``; otherwise the native model serves and the reason is kept.

Tree ensembles in ONNX compare features as float32. A model whose thresholds fall
between two float32 values can answer differently near them: that is what the
verification sample is for, and why a real sample beats random rows.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.serving.model import Array, InputSchema, ModelLike, PredictFn
from modelyard.serving.settings import ServerSettings

log = logging.getLogger("modelyard.serving")

CONVERTIBLE = ("sklearn", "xgboost", "lightgbm")
SAMPLE_ROWS = 64


@dataclass
class Decision:
    engine: str  # "onnxruntime" or "native"
    reason: str
    predict: PredictFn | None = None
    predict_proba: PredictFn | None = None
    layout: dict[str, Any] | None = None
    onnx: bytes | None = None


def _native(reason: str) -> Decision:
    return Decision("native", reason)


def try_fast_path(
    model: ModelLike,
    schema: InputSchema,
    settings: ServerSettings,
    native_predict: PredictFn,
    native_proba: PredictFn | None,
) -> Decision:
    """Convert, verify and, if the predictions match, return ONNX Runtime predict functions.

    ``native_predict``/``native_proba`` are the native model's own predict functions,
    the reference the converted model must match.

    Never raises for a model it cannot convert: the answer is then ``engine="native"`` with
    the reason (unsupported flavor, missing packages, converter error, mismatch).
    """
    if model.flavor not in CONVERTIBLE:
        if model.flavor == "onnx":
            return _native("the model is already ONNX; its flavor runs it with ONNX Runtime")
        return _native(f"no ONNX conversion for flavor {model.flavor!r} (only {CONVERTIBLE})")
    if not schema.numeric:
        return _native("the signature has non-numeric inputs; ONNX conversion needs numbers")
    try:
        importlib.import_module("onnxruntime")
        skl2onnx = importlib.import_module("skl2onnx")
        onnxmltools = importlib.import_module("onnxmltools")
    except ImportError as exc:
        return _native(f"ONNX packages are not installed ({exc.name}); pip install modelyard[onnx]")
    native = model.native
    width = schema.width or _width_of(native)
    if width is None:
        return _native("the input width is unknown (no signature and no n_features_in_)")
    try:
        sample = _sample(settings.onnx_sample, width, schema.dtype)
    except (OSError, ValueError) as exc:
        return _native(f"the verification sample could not be read: {exc}")
    try:
        proto = _convert(model.flavor, native, width, skl2onnx, onnxmltools)
    except Exception as exc:
        return _native(f"ONNX conversion failed: {type(exc).__name__}: {_short(exc)}")
    try:
        session_bytes = proto.SerializeToString()
        session = new_session(session_bytes)
    except Exception as exc:
        return _native(f"ONNX Runtime could not load the converted model: {_short(exc)}")
    return _verify(session, session_bytes, sample, settings, native_predict, native_proba)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else repr(exc))[:300]


def _width_of(native: Any) -> int | None:
    width = getattr(native, "n_features_in_", None)
    if isinstance(width, int | np.integer):
        return int(width)
    for method in ("num_features", "num_feature"):
        fn = getattr(native, method, None)
        if callable(fn):
            try:
                return int(fn())
            except Exception:
                return None
    return None


def _sample(path: Path | None, width: int, dtype: str) -> Array:
    if path is None:
        rng = np.random.default_rng(20240601)
        return rng.normal(size=(SAMPLE_ROWS, width)).astype(dtype)
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        array = np.loadtxt(path, delimiter=",", ndmin=2)
    array = np.asarray(array, dtype=dtype)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{path} holds shape {array.shape}, expected (rows, {width})")
    return array


_registered = False


def _register_converters(skl2onnx: Any, onnxmltools: Any) -> None:
    """Teach skl2onnx the XGBoost/LightGBM estimators (for pipelines that end in one)."""
    global _registered
    if _registered:
        return
    _registered = True
    common = importlib.import_module("skl2onnx.common.shape_calculator")
    pairs: list[tuple[str, str, str, Callable[..., Any], str]] = []
    try:
        xgb_conv = importlib.import_module(
            "onnxmltools.convert.xgboost.operator_converters.XGBoost"
        )
        pairs += [
            ("xgboost", "XGBClassifier", "XGBoostXGBClassifier", xgb_conv.convert_xgboost, "cls"),
            ("xgboost", "XGBRegressor", "XGBoostXGBRegressor", xgb_conv.convert_xgboost, "reg"),
        ]
    except ImportError:
        pass
    try:
        lgb_conv = importlib.import_module(
            "onnxmltools.convert.lightgbm.operator_converters.LightGbm"
        )
        pairs += [
            (
                "lightgbm",
                "LGBMClassifier",
                "LightGbmLGBMClassifier",
                lgb_conv.convert_lightgbm,
                "cls",
            ),
            (
                "lightgbm",
                "LGBMRegressor",
                "LightGbmLGBMRegressor",
                lgb_conv.convert_lightgbm,
                "reg",
            ),
        ]
    except ImportError:
        pass
    for module, cls_name, alias, converter, kind in pairs:
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError):
            continue
        shape = (
            common.calculate_linear_classifier_output_shapes
            if kind == "cls"
            else common.calculate_linear_regressor_output_shapes
        )
        options = (
            {"nocl": [True, False], "zipmap": [True, False, "columns"]} if kind == "cls" else None
        )
        skl2onnx.update_registered_converter(cls, alias, shape, converter, options=options)


def _convert(flavor: str, native: Any, width: int, skl2onnx: Any, onnxmltools: Any) -> Any:
    if flavor in ("xgboost", "lightgbm"):
        tools_type = importlib.import_module("onnxmltools.convert.common.data_types")
        initial = [("input", tools_type.FloatTensorType([None, width]))]
        if flavor == "xgboost":
            return onnxmltools.convert_xgboost(native, initial_types=initial)
        return onnxmltools.convert_lightgbm(native, initial_types=initial, zipmap=False)
    _register_converters(skl2onnx, onnxmltools)
    _integer_missing_flags()
    float_type = importlib.import_module("skl2onnx.common.data_types").FloatTensorType
    # onnxmltools' tree converters write ai.onnx.ml opset 3 at most
    opset = {"": skl2onnx.get_latest_tested_opset_version(), "ai.onnx.ml": 3}
    return skl2onnx.convert_sklearn(
        native,
        initial_types=[("input", float_type([None, width]))],
        options=_no_zipmap(native),
        target_opset=opset,
    )


def _integer_missing_flags() -> None:
    """Make skl2onnx's tree-node writer pass ``nodes_missing_value_tracks_true`` as an int.

    skl2onnx 1.20 gives a HistGradientBoosting leaf the flag as Python ``False``, which the
    onnx 1.2x protobuf refuses in an integer list ("Expected an int, got a boolean"), so no
    HistGradientBoosting model converted. Wrapping its ``add_node`` once (the tree
    converters call it through the module) casts the flag; nothing else changes.
    """
    tree_ensemble = importlib.import_module("skl2onnx.common.tree_ensemble")
    add_node = tree_ensemble.add_node
    if getattr(add_node, "_modelyard_int_flags", False):
        return

    def add_node_int_flags(*args: Any, **kwargs: Any) -> Any:
        flag = kwargs.get("nodes_missing_value_tracks_true")
        if flag is not None:
            kwargs["nodes_missing_value_tracks_true"] = int(flag)
        return add_node(*args, **kwargs)

    add_node_int_flags._modelyard_int_flags = True  # type: ignore[attr-defined]
    setattr(tree_ensemble, "add_node", add_node_int_flags)  # noqa: B010


def _no_zipmap(native: Any) -> dict[int, dict[str, Any]]:
    """Ask every classifier in the model for a plain probability tensor, not a ZipMap."""
    options: dict[int, dict[str, Any]] = {}
    stack = [native]
    while stack:
        obj = stack.pop()
        if hasattr(obj, "predict_proba") and hasattr(obj, "classes_"):
            options[id(obj)] = {"zipmap": False}
        for _, step in getattr(obj, "steps", []) or []:
            stack.append(step)
        for est in getattr(obj, "estimators_", []) or []:
            if not isinstance(est, list | np.ndarray):
                stack.append(est)
    return options


def _verify(
    session: Any,
    session_bytes: bytes,
    sample: Array,
    settings: ServerSettings,
    native_predict: PredictFn,
    native_proba_fn: PredictFn | None,
) -> Decision:
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    feed32 = sample.astype(np.float32)
    try:
        onnx_out = session.run(None, {input_name: feed32})
    except Exception as exc:
        return _native(f"ONNX Runtime failed on the verification sample: {_short(exc)}")
    native_pred = np.asarray(native_predict(sample))
    onnx_pred = np.asarray(onnx_out[0])
    if onnx_pred.size != native_pred.size:
        return _native(
            f"ONNX output {output_names[0]!r} has shape {onnx_pred.shape}, "
            f"native predict has {native_pred.shape}"
        )
    onnx_pred = onnx_pred.reshape(native_pred.shape)
    is_labels = native_pred.dtype.kind in "OUSb" or len(output_names) > 1
    rtol, atol = settings.onnx_rtol, settings.onnx_atol
    if is_labels:
        if native_pred.dtype.kind in "OUS":
            same = np.array_equal(onnx_pred.astype(str), native_pred.astype(str))
        else:
            same = np.array_equal(onnx_pred.astype(native_pred.dtype), native_pred)
        if not same:
            differ = int(np.sum(onnx_pred.astype(str) != native_pred.astype(str)))
            return _native(f"ONNX labels differ from native on {differ} of {len(sample)} rows")
    elif not np.allclose(onnx_pred, native_pred, rtol=rtol, atol=atol, equal_nan=True):
        gap = float(np.nanmax(np.abs(onnx_pred.astype(float) - native_pred.astype(float))))
        return _native(f"ONNX predictions differ from native by up to {gap:.3g} (atol {atol})")

    native_proba: Array | None = None
    if native_proba_fn is not None:
        try:
            native_proba = np.asarray(native_proba_fn(sample))
        except Exception:  # e.g. a regressor behind a generic wrapper: no probabilities
            native_proba = None
    has_proba = native_proba is not None and native_proba.ndim > 0 and len(output_names) > 1
    if has_proba:
        assert native_proba is not None
        onnx_proba = np.asarray(onnx_out[1])
        if onnx_proba.dtype.kind == "O" or onnx_proba.size != native_proba.size:
            return _native(f"ONNX probabilities {onnx_proba.shape} do not match native ones")
        onnx_proba = onnx_proba.reshape(native_proba.shape)
        if not np.allclose(onnx_proba, native_proba, rtol=rtol, atol=atol):
            gap = float(np.max(np.abs(onnx_proba - native_proba)))
            return _native(f"ONNX probabilities differ from native by up to {gap:.3g}")

    layout = {
        "input": input_name,
        "label": output_names[0],
        "tail": list(native_pred.shape[1:]),
        "dtype": native_pred.dtype.str if native_pred.dtype.kind != "O" else "object",
        "proba": output_names[1] if has_proba else None,
        "proba_tail": list(native_proba.shape[1:]) if native_proba is not None else [],
        "proba_dtype": native_proba.dtype.str if native_proba is not None else "<f8",
    }
    predict, predict_proba = predictors(session, layout)
    return Decision(
        "onnxruntime",
        f"converted; matched native on {len(sample)} sample rows (rtol {rtol}, atol {atol})",
        predict,
        predict_proba,
        layout,
        session_bytes,
    )


def predictors(session: Any, layout: dict[str, Any]) -> tuple[PredictFn, PredictFn | None]:
    """Predict functions over an ONNX Runtime session, shaped and typed like the native
    model's answers (``layout`` is recorded by the verification)."""
    input_name = str(layout["input"])
    label_name = str(layout["label"])
    tail = tuple(layout["tail"])
    out_dtype = np.dtype(layout["dtype"])

    def predict(x: Array) -> Array:
        (out,) = session.run([label_name], {input_name: x.astype(np.float32, copy=False)})
        out = np.asarray(out).reshape((len(x), *tail))
        return out if out_dtype.kind in "OUS" else out.astype(out_dtype, copy=False)

    proba_name = layout.get("proba")
    if not proba_name:
        return predict, None
    proba_tail = tuple(layout["proba_tail"])
    proba_dtype = np.dtype(layout["proba_dtype"])

    def predict_proba(x: Array) -> Array:
        (out,) = session.run([proba_name], {input_name: x.astype(np.float32, copy=False)})
        return np.asarray(out).reshape((len(x), *proba_tail)).astype(proba_dtype, copy=False)

    return predict, predict_proba


def new_session(model: bytes | str) -> Any:
    """An ONNX Runtime session on one CPU thread (a replica's parallelism is its workers)."""
    ort = importlib.import_module("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # shape-hint warnings from converted tree models
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


RUNTIME_FILE = "runtime.json"
ONNX_FILE = "model.onnx"


def save_decision(decision: Decision, folder: Path) -> None:
    """Write the decision (and the verified ONNX model) for worker processes to load."""
    folder.mkdir(parents=True, exist_ok=True)
    if decision.onnx is not None:
        (folder / ONNX_FILE).write_bytes(decision.onnx)
    record = {"engine": decision.engine, "reason": decision.reason, "layout": decision.layout}
    (folder / RUNTIME_FILE).write_text(json.dumps(record))


def load_decision(folder: Path) -> Decision:
    """The decision written by :func:`save_decision`, with live predict functions."""
    record = json.loads((folder / RUNTIME_FILE).read_text())
    decision = Decision(str(record["engine"]), str(record["reason"]), layout=record["layout"])
    if decision.engine == "onnxruntime" and decision.layout is not None:
        session = new_session(str(folder / ONNX_FILE))
        decision.predict, decision.predict_proba = predictors(session, decision.layout)
    return decision
