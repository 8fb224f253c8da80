"""ONNX Runtime for a transform's mini-batches, where it is verified equal and faster.

The model server's fast path (:mod:`modelyard.serving.onnx_fastpath`) converts a model
and checks the converted one against the native model on sample rows. A transform
decides the same way, with two differences that matter for a bulk job:

* the verification sample is the first rows of the job's own data (real values beat
  random rows near the trees' thresholds), and
* ONNX Runtime is kept only if it also predicted that sample faster than the native
  model did. scikit-learn's tree ensembles cost more CPU than ONNX Runtime's (a
  HistGradientBoosting classifier ~1.8x more); XGBoost's own predict was 3.5x faster
  than ONNX Runtime on the same trees (LightGBM's is assumed alike), so those flavors
  are not even converted (the conversion and its imports would only add start-up time).

Only float32 matrices are eligible: ONNX tree ensembles compare features as float32, and
the converter rounds each threshold so that a float32 value compares exactly as it does
against scikit-learn's float64 threshold. Labels can then differ only where a row's
summed score is within float32 rounding of the decision boundary; probabilities differ
from the native ones in the last float32 bits (within the verification's tolerance).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("modelyard.transform")

# Flavors whose native predict ONNX Runtime can beat; see the module docstring.
FLAVORS = ("sklearn",)
SAMPLE_ROWS = 20_000
MIN_SAMPLE_ROWS = 1_000  # below this the timing says nothing: stay native

PredictFn = Callable[[Any], Any]


@dataclass
class Engine:
    """The predict functions a transform uses, and why."""

    name: str  # "onnxruntime" or "native"
    reason: str
    predict: PredictFn
    predict_proba: PredictFn | None


def _timed(fn: PredictFn, x: np.ndarray, repeats: int = 2) -> float:
    """The best of ``repeats`` calls: one call on a busy machine says little."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - started)
    return best


def _row_parallel(fn: PredictFn, threads: int) -> PredictFn:
    """``fn`` over ``threads`` slices of the rows at once, concatenated in order.

    A one-thread ONNX Runtime session releases the GIL while it runs, so slices of rows
    on one thread each use the job's CPUs with no more CPU time than one call (a second
    intra-op thread of the session gained ~10% for ~40% more CPU time)."""
    if threads <= 1:
        return fn
    pool = ThreadPoolExecutor(threads, thread_name_prefix="transform-onnx")

    def predict(x: Any) -> Any:
        if len(x) < threads * MIN_SAMPLE_ROWS:
            return fn(x)
        return np.concatenate(list(pool.map(fn, np.array_split(x, threads))))

    return predict


def choose(model: Any, x: Any, *, threads: int = 1) -> Engine:
    """The engine for ``model`` given the first mini-batch's input ``x``.

    Never raises: any reason not to use ONNX Runtime gives the native engine with it.
    """
    native = Engine("native", "", model.predict, getattr(model, "predict_proba", None))
    flavor = getattr(model, "flavor", None)
    if flavor not in FLAVORS:
        native.reason = f"flavor {flavor!r}: its own predict is the fastest"
        return native
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != np.float32:
        native.reason = "ONNX Runtime is used for float32 feature matrices only"
        return native
    if len(x) < MIN_SAMPLE_ROWS:
        native.reason = f"fewer than {MIN_SAMPLE_ROWS} rows to verify and time ONNX Runtime on"
        return native
    try:
        return _try_onnx(model, x[:SAMPLE_ROWS], native, threads)
    except Exception as exc:  # an unexpected converter or runtime error: stay native
        native.reason = f"ONNX Runtime could not be tried: {type(exc).__name__}: {exc}"[:300]
        return native


def _try_onnx(model: Any, sample: np.ndarray, native: Engine, threads: int) -> Engine:
    from modelyard.serving import onnx_fastpath
    from modelyard.serving.model import InputSchema
    from modelyard.serving.settings import ServerSettings

    with tempfile.TemporaryDirectory(prefix="modelyard-transform-") as folder:
        path = Path(folder) / "sample.npy"
        np.save(path, sample)
        schema = InputSchema.from_signature(getattr(model.descriptor, "signature", None))
        decision = onnx_fastpath.try_fast_path(
            model,
            schema,
            ServerSettings(onnx_sample=path),
            native.predict,
            native.predict_proba,
        )
    if decision.predict is None:
        native.reason = decision.reason
        return native
    predict = _row_parallel(decision.predict, threads)
    predict_proba = decision.predict_proba
    if predict_proba is not None:
        predict_proba = _row_parallel(predict_proba, threads)
    predict(sample[:16])  # warm-up
    ort_s, native_s = _timed(predict, sample), _timed(native.predict, sample)
    speed = f"{native_s / max(ort_s, 1e-9):.1f}x the native speed on {len(sample)} rows"
    if ort_s >= native_s:
        native.reason = f"ONNX Runtime verified but not faster ({speed})"
        return native
    return Engine(
        "onnxruntime", f"{decision.reason}; {speed}; {threads} thread(s)", predict, predict_proba
    )
