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

XGBoost and LightGBM instead run their own predict over slices of each mini-batch, one
OpenMP thread per call and the job's CPUs as threads taking the next slice
(:func:`_native_slices`): a call with several OpenMP threads splits its rows among them
up front and waits for the slowest, so anything else that runs on the machine for a
moment (the job's own reader thread, the control plane) stalls the whole call.

Converting, verifying and timing cost seconds (a HistGradientBoosting classifier of 100
trees: ~2 s on two cores), every job again. So the verified ONNX model and the timing's
verdict are kept per model artifact (:func:`cache_folder`: named by the SHA-256 of the
artifact's bytes and of the converter's and runtime's versions, written whole or not at
all, and read only if the ONNX file's own SHA-256 matches the record). A later job of the
same artifact loads it and checks it again against the native model on its own first
:data:`CHECK_ROWS` rows (tens of milliseconds) instead of converting.

Only float32 matrices are eligible: ONNX tree ensembles compare features as float32, and
the converter rounds each threshold so that a float32 value compares exactly as it does
against scikit-learn's float64 threshold. Labels can then differ only where a row's
summed score is within float32 rounding of the decision boundary, so a classifier's rows
whose probabilities are that close to a tie are labelled by the native model
(:func:`_ties_native`); probabilities differ from the native ones in the last float32
bits (within the verification's tolerance).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("modelyard.transform")

# Flavors whose native predict ONNX Runtime can beat; see the module docstring.
FLAVORS = ("sklearn",)
# Flavors whose own predict runs over row slices on the job's threads.
SLICED_FLAVORS = ("xgboost", "lightgbm")
SAMPLE_ROWS = 20_000
MIN_SAMPLE_ROWS = 1_000  # below this the timing says nothing: stay native
SLICES_PER_THREAD = 4  # a thread slowed for a moment leaves its next slices to the others
MIN_SLICE_ROWS = 1_000  # a call's own cost stays small beside its rows'

PredictFn = Callable[[Any], Any]


@dataclass
class Engine:
    """The predict functions a transform uses, and why."""

    name: str  # "onnxruntime" or "native"
    reason: str
    predict: PredictFn
    predict_proba: PredictFn | None


def _row_parallel(
    fn: PredictFn, threads: int, initializer: Callable[[], object] | None = None
) -> PredictFn:
    """``fn`` over slices of the rows on ``threads`` threads, concatenated in order.

    Each thread takes the next slice when it is done with its last, :data:`SLICES_PER_THREAD`
    slices per thread, so a thread slowed for a moment by other work leaves more slices
    to the others. The calls release the GIL while they run (a one-thread ONNX Runtime
    session; XGBoost's and LightGBM's C libraries), so the slices use the job's CPUs with
    no more CPU time than one call (a second intra-op thread of an ONNX Runtime session
    gained ~10% for ~40% more CPU time). ``initializer`` runs once in each thread."""
    if threads <= 1:
        return fn
    pool = ThreadPoolExecutor(
        threads, thread_name_prefix="transform-predict", initializer=initializer
    )

    def predict(x: Any) -> Any:
        rows = len(x)
        if rows < threads * MIN_SAMPLE_ROWS:
            return fn(x)
        count = max(threads, min(threads * SLICES_PER_THREAD, rows // MIN_SLICE_ROWS))
        bounds = np.linspace(0, rows, count + 1).astype(int).tolist()
        pieces = pool.map(lambda i: fn(_rows(x, bounds[i], bounds[i + 1])), range(count))
        return np.concatenate([np.asarray(piece) for piece in pieces])

    return predict


def _rows(x: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a NumPy matrix or an Arrow record batch (named columns)."""
    if isinstance(x, np.ndarray):
        return x[start:stop]
    return x.slice(start, stop - start)


def _native_slices(model: Any, native: Engine, threads: int) -> Engine:
    """XGBoost's or LightGBM's own predict with one OpenMP thread per call, over row
    slices on ``threads`` threads (see the module docstring). A row's prediction does
    not depend on the other rows of its call, so the answers are the native ones.

    On the benchmark's XGBoost classifier (100 trees, four mini-batches of 250,000 rows,
    2 cores) predicting took 0.72-0.73 s this way against 0.76-1.08 s as one call per
    mini-batch with two OpenMP threads, in the same run."""
    if threads <= 1:
        native.reason = f"flavor {model.flavor!r}: its own predict on one thread"
        return native
    wrapped: Any = getattr(model, "native", None)
    booster: Any = wrapped.get_booster() if hasattr(wrapped, "get_booster") else wrapped
    if model.flavor == "xgboost" and hasattr(booster, "set_param"):
        booster.set_param({"nthread": 1})  # XGBoost sizes its calls by this, not by OpenMP

    def one_openmp_thread() -> object:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1, user_api="openmp")  # this thread's calls only

    proba = native.predict_proba
    return Engine(
        "native",
        f"flavor {model.flavor!r}: its own predict, one OpenMP thread per call, over row "
        f"slices on {threads} threads",
        _row_parallel(native.predict, threads, one_openmp_thread),
        None if proba is None else _row_parallel(proba, threads, one_openmp_thread),
    )


def choose(model: Any, x: Any, *, threads: int = 1, cache: Path | None = None) -> Engine:
    """The engine for ``model`` given the first mini-batch's input ``x``.

    ``cache`` is this model artifact's folder from :func:`cache_folder` (None: convert
    every time). Never raises: any reason not to use ONNX Runtime gives the native
    engine with it.
    """
    native = Engine("native", "", model.predict, getattr(model, "predict_proba", None))
    flavor = getattr(model, "flavor", None)
    if flavor in SLICED_FLAVORS:
        return _native_slices(model, native, threads)
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
        if cache is not None:
            cached = _from_cache(cache, x[:CHECK_ROWS], native, threads)
            if cached is not None:
                return cached
        return _try_onnx(model, x[:SAMPLE_ROWS], native, threads, cache)
    except Exception as exc:  # an unexpected converter or runtime error: stay native
        native.reason = f"ONNX Runtime could not be tried: {type(exc).__name__}: {exc}"[:300]
        return native


def _try_onnx(
    model: Any, sample: np.ndarray, native: Engine, threads: int, cache: Path | None
) -> Engine:
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
    if decision.onnx is not None and decision.layout is not None:
        engine = _onnx_engine(decision.onnx, decision.layout, native, threads)
    else:
        engine = Engine("onnxruntime", "", decision.predict, decision.predict_proba)
    ort_s, native_s = _race(engine.predict, native.predict, sample)
    speed = f"{native_s / max(ort_s, 1e-9):.1f}x the native speed on {len(sample)} rows"
    faster = ort_s < native_s
    if cache is not None and decision.onnx is not None and decision.layout is not None:
        record = {
            "onnx_sha256": hashlib.sha256(decision.onnx).hexdigest(),
            "layout": decision.layout,
            "reason": decision.reason,
            "speed": speed,
            "faster": faster,
        }
        _store(cache, decision.onnx, record)
    if not faster:
        native.reason = f"ONNX Runtime verified but not faster ({speed})"
        return native
    engine.reason = f"{decision.reason}; {speed}; {threads} thread(s)"
    return engine


def _onnx_engine(onnx: bytes, layout: dict[str, Any], native: Engine, threads: int) -> Engine:
    """ONNX Runtime over ``threads`` row slices; for a classifier, rows that ONNX Runtime
    finds within :data:`TIE_MARGIN` of a tie between two classes get the native label."""
    from modelyard.serving import onnx_fastpath

    session = onnx_fastpath.new_session(onnx)
    predict, predict_proba = onnx_fastpath.predictors(session, layout)
    if layout.get("proba") and not layout["tail"]:  # one label per row
        predict = _ties_native(session, layout, native.predict)
    proba = _row_parallel(predict_proba, threads) if predict_proba is not None else None
    return Engine("onnxruntime", "", _row_parallel(predict, threads), proba)


def _ties_native(session: Any, layout: dict[str, Any], native: PredictFn) -> PredictFn:
    """Labels from one ONNX Runtime call that also gives the probabilities; where the two
    highest are within :data:`TIE_MARGIN`, the native model's label instead.

    ONNX Runtime sums float32 leaf values in float32, scikit-learn float64 ones in float64:
    on the benchmark's million rows (a HistGradientBoosting classifier of 100 trees) the
    probabilities differed by at most 3e-7, so only a row that close to a tie could get
    another label, which the verification sample cannot rule out for every row. 56 rows of
    that million were within the margin: the native model's call on them costs little."""
    input_name, label_name, proba_name = layout["input"], layout["label"], layout["proba"]
    tail = tuple(layout["tail"])
    out_dtype = np.dtype(layout["dtype"])

    def predict(x: Any) -> Any:
        feed = {input_name: x.astype(np.float32, copy=False)}
        label, proba = session.run([label_name, proba_name], feed)
        out = np.asarray(label).reshape((len(x), *tail))
        if out_dtype.kind not in "OUS":
            out = out.astype(out_dtype, copy=False)
        scores = np.asarray(proba).reshape(len(x), -1)
        if scores.shape[1] < 2:
            return out
        top = np.partition(scores, scores.shape[1] - 2, axis=1)[:, -2:]
        near = np.flatnonzero(top[:, 1] - top[:, 0] < TIE_MARGIN)
        if len(near):
            out = out.copy()
            out[near] = np.asarray(native(x[near])).reshape((len(near), *tail))
        return out

    return predict


def _race(ort: PredictFn, native: PredictFn, x: np.ndarray) -> tuple[float, float]:
    """The best seconds of each over :data:`TIMING_ROUNDS` alternated calls (after a
    warm-up of ONNX Runtime): on a busy machine one call each says little, and the
    other jobs' load then falls on both alike."""
    ort(x[:16])
    best_ort = best_native = float("inf")
    for _ in range(TIMING_ROUNDS):
        best_ort = min(best_ort, _seconds(ort, x))
        best_native = min(best_native, _seconds(native, x))
    return best_ort, best_native


def _seconds(fn: PredictFn, x: np.ndarray) -> float:
    started = time.perf_counter()
    fn(x)
    return time.perf_counter() - started


# -- the verified conversion, kept per model artifact -----------------------------------------

CACHE_ENV = "MODELYARD_TRANSFORM_CACHE"
CHECK_ROWS = 5_000  # rows of each later job on which the cached model is checked again
RECORD_FILE = "transform.json"
ONNX_FILE = "model.onnx"
TIMING_ROUNDS = 3
TIE_MARGIN = 1e-4  # probabilities this close: the native model labels the row
# The packages whose versions the conversion or its answers depend on.
_VERSIONED = ("scikit-learn", "skl2onnx", "onnxmltools", "onnx", "onnxruntime", "numpy")


def cache_folder(artifact: Path) -> Path | None:
    """Where the verified ONNX model of the model artifact ``artifact`` (a file) is kept
    for later jobs: ``$MODELYARD_TRANSFORM_CACHE`` (``off``: none) or else
    ``$XDG_CACHE_HOME/modelyard/transform-onnx`` (``~/.cache/...``), then a folder named by
    the SHA-256 of the artifact's bytes and of the converter's and runtime's versions.
    None when the artifact cannot be read."""
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    if setting:
        root = Path(setting)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "modelyard" / "transform-onnx"
    digest = hashlib.sha256()
    digest.update(_versions().encode())
    try:
        with open(artifact, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return root / digest.hexdigest()


def _versions() -> str:
    found = []
    for name in _VERSIONED:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name}==none")
    return ";".join(found) + "\0"


def _store(folder: Path, onnx: bytes, record: dict[str, Any]) -> None:
    """Write the folder whole or not at all: files in a new folder beside it, renamed
    into place (a job that stored it first wins; the rename then fails harmlessly)."""
    partial: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        (partial / ONNX_FILE).write_bytes(onnx)
        (partial / RECORD_FILE).write_text(json.dumps(record), encoding="utf-8")
        os.rename(partial, folder)
        partial = None
    except OSError as exc:
        if not folder.exists():
            log.warning("the verified ONNX model could not be cached in %s: %s", folder, exc)
    finally:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)


def _from_cache(folder: Path, sample: np.ndarray, native: Engine, threads: int) -> Engine | None:
    """The engine an earlier job of the same artifact verified, checked again on this
    job's first rows; None when nothing (readable) is cached."""
    try:
        record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
        onnx = (folder / ONNX_FILE).read_bytes()
        if hashlib.sha256(onnx).hexdigest() != record["onnx_sha256"]:
            return None
        speed, reason, layout = str(record["speed"]), str(record["reason"]), record["layout"]
        faster = bool(record["faster"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not faster:
        native.reason = f"ONNX Runtime verified but not faster ({speed}; cached)"
        return native
    engine = _onnx_engine(onnx, layout, native, threads)
    differs = _differs(engine, native, sample)
    if differs is not None:
        native.reason = f"the cached ONNX model {differs} on this job's first rows"
        return native
    engine.reason = (
        f"cached: {reason}; {speed}; checked again on {len(sample)} rows; {threads} thread(s)"
    )
    return engine


def _differs(ort: Engine, native: Engine, sample: np.ndarray) -> str | None:
    """How ONNX Runtime's answers on ``sample`` differ from the native ones (labels
    exactly, numbers within the serving verification's tolerances), or None."""
    from modelyard.serving.settings import ServerSettings

    settings = ServerSettings()
    got, want = np.asarray(ort.predict(sample)), np.asarray(native.predict(sample))
    if got.shape != want.shape:
        return f"answered shape {got.shape}, not {want.shape},"
    if want.dtype.kind in "OUSbiu":
        if not np.array_equal(got.astype(str), want.astype(str)):
            return f"gave other labels on {int(np.sum(got.astype(str) != want.astype(str)))} rows"
    elif not np.allclose(got, want, rtol=settings.onnx_rtol, atol=settings.onnx_atol):
        return "gave other numbers"
    if ort.predict_proba is not None and native.predict_proba is not None:
        got_p, want_p = (
            np.asarray(ort.predict_proba(sample)),
            np.asarray(native.predict_proba(sample)),
        )
        if got_p.shape != want_p.shape or not np.allclose(
            got_p, want_p, rtol=settings.onnx_rtol, atol=settings.onnx_atol
        ):
            return "gave other probabilities"
    return None
