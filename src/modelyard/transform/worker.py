"""The program a batch-transform job runs: ``python -m modelyard.transform.worker``.

It honours the container contract like any job: the model version's artifact is the
``model`` channel, the input files are the ``data`` channel, the settings are the job's
hyperparameters (a :class:`~modelyard.transform.schemas.WorkerConfig`). It writes

* ``output/data/part-<file>.<format>``: one part per input file, rows in input order;
* ``output/errors.jsonl``: one ``{"file", "row", "error"}`` line per failed record;
* ``output/summary.json``: counts, parts, seconds, rows/s;
* ``output/failure`` when it fails (``on_error="stop"``, too many errors, no model).

Happy path: each mini-batch goes to ``model.predict`` in one vectorised call. Only when a
mini-batch fails is it split in halves, again and again, to find the failing records
(a few dozen calls for one bad record in 10,000), so a bad record costs little and its
neighbours are still predicted. ``workers`` processes take every n-th file by path (as
SageMaker's ShardedByS3Key); ``max_concurrent`` threads in each predict mini-batches at
once (XGBoost, LightGBM and ONNX Runtime release the GIL).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import tarfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelyard.core.paths import safe_component
from modelyard.flavors import load_model
from modelyard.transform import fastpath, reading
from modelyard.transform.config import (
    ERRORS_FILE,
    PARTS_DIR,
    PREDICTION,
    PROBABILITY_PREFIX,
    SUMMARY_FILE,
    WorkerConfig,
)

PROGRESS_EVERY_S = 2.0
ERROR_TEXT = 500  # characters of one record's error kept
T = TypeVar("T")


class StopTransform(Exception):
    """The job must end now (on_error=stop, or more errors than max_errors)."""


@dataclass(frozen=True)
class Paths:
    data: Path
    model: Path
    output: Path
    scratch: Path

    @classmethod
    def from_env(cls) -> Paths:
        output = Path(os.environ["SM_OUTPUT_DIR"])
        return cls(
            data=Path(os.environ["SM_CHANNEL_DATA"]),
            model=Path(os.environ["SM_CHANNEL_MODEL"]),
            output=output,
            scratch=Path(os.environ["SM_MODEL_DIR"]).parent / "transform",
        )

    @property
    def model_folder(self) -> Path:
        return self.scratch / "model"


# -- the model ------------------------------------------------------------------------------


def unpack(config: WorkerConfig, paths: Paths) -> None:
    """Extract the model version's artifact into ``paths.model_folder``, once, before any
    worker starts (the job's input copy was verified against its digest)."""
    folder = paths.model_folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        # The name comes from the job's config: one component, checked where it is used.
        with tarfile.open(paths.model / safe_component(config.model_filename), "r:gz") as tar:
            tar.extractall(folder, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise StopTransform(
            f"model {config.model} v{config.model_version}: its artifact is not a saved "
            f"model folder (.tar.gz): {exc}"
        ) from None


# -- one mini-batch -------------------------------------------------------------------------


class Predictor:
    """Turns an input batch into the output table; raises if any record fails."""

    def __init__(
        self, config: WorkerConfig, model: Any, *, threads: int = 1, cache: Path | None = None
    ) -> None:
        self.config = config
        self.model = model
        self.threads = threads
        self.cache = cache  # where a verified ONNX model of this artifact is kept
        self.engine: fastpath.Engine | None = None
        self._engine_lock = threading.Lock()
        signature = getattr(getattr(model, "descriptor", None), "signature", None)
        names = [s.name for s in (signature.inputs if signature else []) if s.name]
        self.signature_names: list[str] = names
        self.classes: list[Any] | None = getattr(model, "classes", None)
        self.matrix = Matrix()

    def features(self, batch: pa.RecordBatch) -> tuple[list[str], Any]:
        """The model's input: named columns for a model with a column signature, else a
        2-D NumPy matrix of the selected columns."""
        names = self.config.input_filter or self.signature_names or batch.schema.names
        missing = [n for n in names if n not in batch.schema.names]
        if missing:
            raise StopTransform(
                f"input column(s) {', '.join(map(repr, missing))} are not in the data "
                f"(columns: {', '.join(map(repr, batch.schema.names))})"
            )
        selected = batch.select(names)
        if self.signature_names:
            return names, selected
        return names, self.matrix(selected)

    def _engine(self, x: Any) -> fastpath.Engine:
        """Native or ONNX Runtime, decided once on the first mini-batch's input."""
        with self._engine_lock:
            if self.engine is None:
                self.engine = fastpath.choose(self.model, x, threads=self.threads, cache=self.cache)
                print(f"transform: engine {self.engine.name} ({self.engine.reason})", flush=True)
            return self.engine

    def __call__(self, parse: reading.ParseFn, batch: pa.RecordBatch) -> pa.Table:
        typed = parse(batch)
        if typed.num_rows == 0:
            return pa.table({})
        _names, x = self.features(typed)
        out: dict[str, pa.Array] = {}
        if self.config.join_source == "Input":
            out.update({n: typed.column(i) for i, n in enumerate(typed.schema.names)})
        engine = self._engine(x)
        prediction = np.asarray(engine.predict(x))
        if prediction.shape[:1] != (typed.num_rows,):
            raise ValueError(
                f"the model returned {prediction.shape[0] if prediction.ndim else 1} "
                f"predictions for {typed.num_rows} records"
            )
        if prediction.ndim == 2 and prediction.shape[1] == 1:
            prediction = prediction[:, 0]
        if prediction.ndim == 1:
            out[PREDICTION] = pa.array(prediction)
        else:
            flat = prediction.reshape(prediction.shape[0], -1)
            for j in range(flat.shape[1]):
                out[f"{PREDICTION}_{j}"] = pa.array(flat[:, j])
        if self.config.probabilities and engine.predict_proba is not None:
            proba = np.asarray(engine.predict_proba(x))
            labels = self.classes or list(range(proba.shape[1]))
            for j, label in enumerate(labels):
                out[f"{PROBABILITY_PREFIX}{label}"] = pa.array(proba[:, j])
        table = pa.table(out)
        if self.config.output_filter:
            missing = [n for n in self.config.output_filter if n not in table.column_names]
            if missing:
                raise StopTransform(
                    f"output_filter column(s) {', '.join(map(repr, missing))} are not in the "
                    f"result (columns: {', '.join(map(repr, table.column_names))})"
                )
            table = table.select(self.config.output_filter)
        return table


# A number as text: what a CSV or JSON reader would have typed as a number.
NUMBER = r"^\s*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|nan|NaN|inf|Infinity)\s*$"


def _is_number(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_boolean(arrow_type)
        or pa.types.is_null(arrow_type)
    )


class Matrix:
    """Builds the model's 2-D input from the selected columns.

    Numeric columns give a float64 matrix (float32 if all are; nulls become NaN). A text
    column holding numbers (a CSV column with one stray value is read as text) is cast to
    numbers, and a value that is not one fails with the column's name; which text columns
    hold numbers is decided once, on the first values seen. Anything else (real text)
    gives an object matrix, for models that take text.
    """

    def __init__(self) -> None:
        self.numeric_text: dict[str, bool] = {}

    def _holds_numbers(self, name: str, column: pa.Array) -> bool | None:
        decided = self.numeric_text.get(name)
        if decided is None:
            values = column.drop_null()
            if len(values) == 0:
                return None
            decided = bool(pc.any(pc.match_substring_regex(values, NUMBER)).as_py())
            self.numeric_text[name] = decided
        return decided

    @staticmethod
    def _to_float(name: str, column: pa.Array) -> pa.Array:
        try:
            return pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = pc.filter(column, pc.invert(pc.match_substring_regex(column, NUMBER)))
            value = bad[0].as_py() if len(bad) else None
            raise ValueError(f"column {name!r}: {value!r} is not a number") from None

    def __call__(self, batch: pa.RecordBatch) -> Any:
        columns: list[pa.Array] = []
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            if _is_number(column.type):
                columns.append(column.cast(pa.float64()) if column.null_count else column)
            elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                if self._holds_numbers(name, column) is False:
                    return np.column_stack(
                        [c.to_numpy(zero_copy_only=False) for c in batch.columns]
                    )
                columns.append(self._to_float(name, column))
            else:
                return np.column_stack([c.to_numpy(zero_copy_only=False) for c in batch.columns])
        # float32 data stays float32 (what XGBoost and ONNX models take), else float64.
        single = all(pa.types.is_float32(c.type) for c in columns)
        dtype = np.float32 if single else np.float64
        # Columns stacked as rows, then one transposing copy into row order: NumPy copies
        # a transposed array block by block, ~6x faster than filling each column of the
        # row-ordered matrix in turn (strided writes).
        stacked = np.empty((len(columns), batch.num_rows), dtype=dtype)
        for j, column in enumerate(columns):
            stacked[j] = column.to_numpy(zero_copy_only=False)
        return np.ascontiguousarray(stacked.T)


# -- one worker: a share of the files --------------------------------------------------------


@dataclass
class Counters:
    rows_in: int = 0
    rows_out: int = 0
    errors: int = 0
    last_error: str = ""
    predicted_any: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Progress:
    """Prints ``transform: <done>/<total> rows …`` now and then (the job's log shows it)."""

    def __init__(self, label: str, total: int | None, counters: Counters) -> None:
        self.label = label
        self.total = total
        self.counters = counters
        self.started = time.monotonic()
        self.last = 0.0

    def tick(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        c = self.counters
        elapsed = max(now - self.started, 1e-9)
        done = f"{c.rows_in}/{self.total}" if self.total is not None else f"{c.rows_in}"
        pct = f" ({100.0 * c.rows_in / self.total:.1f}%)" if self.total else ""
        print(
            f"transform{self.label}: {done} rows{pct} · {c.rows_in / elapsed:.0f} rows/s · "
            f"{c.errors} errors",
            flush=True,
        )


class Writer:
    """One output part in the accepted format; tables of the same schema appended."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.schema: pa.Schema | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._csv: pacsv.CSVWriter | None = None
        self._jsonl: Any = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.schema is None:
            self.schema = table.schema
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.fmt == "parquet":
                self._parquet = pq.ParquetWriter(self.path, self.schema)
            elif self.fmt == "csv":
                self._csv = pacsv.CSVWriter(self.path, self.schema)
            else:
                self._jsonl = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        if self._parquet is not None:
            self._parquet.write_table(table)
        elif self._csv is not None:
            self._csv.write_table(table)
        else:
            text = table.to_pandas().to_json(orient="records", lines=True, date_format="iso")
            self._jsonl.write(text if text.endswith("\n") else text + "\n")

    def close(self) -> None:
        for handle in (self._parquet, self._csv, self._jsonl):
            if handle is not None:
                handle.close()


def _shorten(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text[:ERROR_TEXT]


class FileRun:
    """Predicts one input file into one part, reporting failed records."""

    def __init__(
        self,
        config: WorkerConfig,
        predictor: Predictor,
        counters: Counters,
        errors: Any,
        progress: Progress,
    ) -> None:
        self.config = config
        self.predictor = predictor
        self.counters = counters
        self.errors = errors
        self.progress = progress

    def _record_error(self, src: reading.InputFile, row: int, message: str) -> None:
        with self.counters.lock:
            self.counters.errors += 1
            self.counters.last_error = message
            count = self.counters.errors
            self.errors.write(json.dumps({"file": src.rel, "row": row, "error": message}) + "\n")
            self.errors.flush()
        where = f"record {row} of {src.rel}" if row >= 0 else f"a record of {src.rel}"
        if self.config.on_error == "stop":
            raise StopTransform(f"{where} failed (on_error=stop): {message}")
        if self.config.max_errors is not None and count > self.config.max_errors:
            raise StopTransform(
                f"{count} records failed, more than max_errors={self.config.max_errors}; "
                f"the last: {where}: {message}"
            )

    def _predict(self, src: reading.InputFile, start: int, batch: pa.RecordBatch) -> list[pa.Table]:
        """Tables for the batch's good records, in order; bad ones reported (bisection)."""

        def parse(b: pa.RecordBatch) -> pa.RecordBatch:
            return reading.parse(self.config.format, src, b)

        try:
            return [self.predictor(parse, batch)]
        except StopTransform:
            raise
        except Exception as exc:
            if batch.num_rows == 1:
                self._record_error(src, src.file_row(start), _shorten(exc))
                return []
        half = batch.num_rows // 2
        return self._predict(src, start, batch.slice(0, half)) + self._predict(
            src, start + half, batch.slice(half)
        )

    def _predict_batch(
        self, src: reading.InputFile, start: int, batch: pa.RecordBatch
    ) -> list[pa.Table]:
        """:meth:`_predict`, except that a first mini-batch in which every record fails
        ends the job: that is a wrong model or wrong columns, not bad records."""
        tables = self._predict(src, start, batch)
        if any(t.num_rows for t in tables):
            self.counters.predicted_any = True
        elif batch.num_rows > 1 and not self.counters.predicted_any:
            raise StopTransform(
                f"every record of the first mini-batch of {src.rel} failed, so the model or "
                f"the columns are wrong, not the records: {self.counters.last_error}"
            )
        return tables

    def run(
        self, src: reading.InputFile, part: Path, batches: Iterator[reading.Batch] | None = None
    ) -> int:
        """Rows written to ``part``; ``batches`` are ``src``'s mini-batches if already
        being read (:func:`_files_read_ahead`), else they are read here."""
        size = None if self.config.split_type == "None" else self.config.batch_size
        writer = Writer(part, self.config.accept)
        written = 0
        window = max(1, self.config.max_concurrent)
        # Tables are written in a thread while the next mini-batch predicts, in order; at
        # most one write waits behind the running one (bounded memory).
        writing: deque[Future[None]] = deque()
        write_pool = ThreadPoolExecutor(1, thread_name_prefix="transform-write")

        def written_out() -> None:
            try:
                writing.popleft().result()
            except Exception as exc:
                raise _WriteFailed(exc) from exc

        def finish(rows: int, tables: list[pa.Table]) -> None:
            nonlocal written
            for table in tables:
                while len(writing) >= 2:
                    written_out()
                writing.append(write_pool.submit(writer.write, table))
                written += table.num_rows
            with self.counters.lock:
                self.counters.rows_in += rows
                self.counters.rows_out += sum(t.num_rows for t in tables)
            self.progress.tick()

        try:
            stream = (
                batches
                if batches is not None
                else _read_ahead(reading.batches(self.config.format, src, size))
            )
            if window == 1:
                for start, batch in stream:
                    finish(batch.num_rows, self._predict_batch(src, start, batch))
            else:
                with ThreadPoolExecutor(window, thread_name_prefix="transform") as pool:
                    pending: deque[tuple[int, Future[list[pa.Table]]]] = deque()
                    for start, batch in stream:
                        pending.append(
                            (batch.num_rows, pool.submit(self._predict_batch, src, start, batch))
                        )
                        if len(pending) >= 2 * window:
                            rows, future = pending.popleft()
                            finish(rows, future.result())
                    while pending:
                        rows, future = pending.popleft()
                        finish(rows, future.result())
            while writing:
                written_out()
            for row, message in src.skipped:
                self._record_error(src, row, message)
        except StopTransform:
            raise
        except _WriteFailed as exc:
            self._record_error(src, -1, f"writing its output failed: {_shorten(exc.error)}")
        except Exception as exc:  # the file itself could not be read
            self._record_error(src, -1, f"reading the file failed: {_shorten(exc)}")
        finally:
            write_pool.shutdown(wait=True)
            writer.close()
        return written


def _read_ahead(stream: Iterator[T]) -> Iterator[T]:
    """The same batches, the next one read in a thread while the caller predicts this one
    (Arrow's readers and the models' predict calls release the GIL). A reading error is
    raised where the batch it broke would have been."""
    with ThreadPoolExecutor(1, thread_name_prefix="transform-read") as pool:
        ahead = pool.submit(next, stream, None)
        while (item := ahead.result()) is not None:
            ahead = pool.submit(next, stream, None)
            yield item


class _WriteFailed(Exception):
    """Writing a file's output part failed with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _FileEnd:
    """In :func:`_files_read_ahead`'s stream: a file's last batch was read (or reading it
    failed with ``error``)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error


def _files_read_ahead(
    config: WorkerConfig, files: list[reading.InputFile]
) -> Iterator[Iterator[reading.Batch]]:
    """Each file's mini-batches, the next one always read in a thread while the caller
    predicts this one, across files too: the next file's first batch is read while this
    file's last one is predicted (with a file per mini-batch, reading per file would
    never overlap). A file that cannot be read raises where its batches stop; the files
    after it are still read. Each file's iterator must be used up before the next's."""
    size = None if config.split_type == "None" else config.batch_size

    def every_batch() -> Iterator[tuple[int, pa.RecordBatch] | _FileEnd]:
        for src in files:
            try:
                yield from reading.batches(config.format, src, size)
            except Exception as exc:  # reported for this file; the next file is read
                yield _FileEnd(exc)
            else:
                yield _FileEnd(None)

    shared = _read_ahead(every_batch())

    def one_file() -> Iterator[reading.Batch]:
        for item in shared:
            if isinstance(item, _FileEnd):
                if item.error is not None:
                    raise item.error
                return
            yield item

    for _src in files:
        yield one_file()


def _part_name(index: int, fmt: str) -> str:
    return f"part-{index:05d}.{fmt}"


def run_shard(
    config: WorkerConfig, paths: Paths, files: list[reading.InputFile], label: str
) -> dict[str, Any]:
    """Predict ``files``; this worker's counts and parts (raises StopTransform)."""
    model = load_model(paths.model_folder)  # a skops file: without PyTorch (flavors)
    # This worker's share of the job's CPUs (``transform`` sets OMP_NUM_THREADS to it
    # when there are several workers).
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.environ.get("SM_NUM_CPUS") or 1)
    cache = fastpath.cache_folder(paths.model / safe_component(config.model_filename))
    predictor = Predictor(config, model, threads=max(1, threads), cache=cache)
    counters = Counters()
    totals = [reading.count_rows(config.format, f.path) for f in files]
    total = None if any(t is None for t in totals) else sum(t or 0 for t in totals)
    progress = Progress(label, total, counters)
    parts: list[str] = []
    errors_path = paths.scratch / f"errors{label.replace(' ', '-')}.jsonl"
    errors_path.parent.mkdir(parents=True, exist_ok=True)
    with open(errors_path, "w", encoding="utf-8") as errors:
        run = FileRun(config, predictor, counters, errors, progress)
        for src, batches in zip(files, _files_read_ahead(config, files), strict=True):
            name = _part_name(src.index, config.accept)
            if run.run(src, paths.output / PARTS_DIR / name, batches):
                parts.append(name)
    progress.tick(final=True)
    return {
        "rows_in": counters.rows_in,
        "rows_out": counters.rows_out,
        "errors": counters.errors,
        "parts": parts,
        "errors_file": str(errors_path),
    }


def _shard_in_process(
    config_json: str, paths: Paths, files: list[reading.InputFile], label: str
) -> dict[str, Any]:
    return run_shard(WorkerConfig.model_validate_json(config_json), paths, files, label)


def input_files(folder: Path, column_names: list[str] | None = None) -> list[reading.InputFile]:
    """The channel's files, sorted by their path in the dataset (``column_names``: those
    of CSV files without a header row)."""
    rels = sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()
    )
    return [
        reading.InputFile(i, rel, folder / rel, column_names=column_names)
        for i, rel in enumerate(rels)
    ]


def transform(config: WorkerConfig, paths: Paths) -> dict[str, Any]:
    """Run the whole transform; the summary (also written to ``output/summary.json``)."""
    started = time.monotonic()
    files = input_files(paths.data, config.csv_column_names)
    workers = max(1, min(config.workers, len(files) or 1))
    print(
        f"transform: model {config.model} v{config.model_version}, {len(files)} file(s), "
        f"{workers} worker(s), mini-batches of {config.batch_size} rows",
        flush=True,
    )
    unpack(config, paths)
    if workers == 1:
        results = [run_shard(config, paths, files, "")]
    else:
        # Each worker process gets its share of the CPUs for the model's own threads.
        cpus = int(os.environ.get("SM_NUM_CPUS", "1"))
        os.environ["OMP_NUM_THREADS"] = str(max(1, cpus // workers))
        shards = [files[w::workers] for w in range(workers)]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [
                pool.submit(
                    _shard_in_process,
                    config.model_dump_json(),
                    paths,
                    shard,
                    f" [{w + 1}/{workers}]",
                )
                for w, shard in enumerate(shards)
            ]
            results = [f.result() for f in futures]
    errors = _merge_errors(paths, files, [r["errors_file"] for r in results])
    seconds = time.monotonic() - started
    rows_in = sum(r["rows_in"] for r in results)
    summary = {
        "rows_in": rows_in,
        "rows_out": sum(r["rows_out"] for r in results),
        "error_count": errors,
        "files": len(files),
        "workers": workers,
        "parts": sorted(f"{PARTS_DIR}/{p}" for r in results for p in r["parts"]),
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows_in / seconds, 1) if seconds > 0 else None,
    }
    (paths.output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(
        f"transform: done · {summary['rows_in']} rows in, {summary['rows_out']} rows out, "
        f"{errors} errors · {summary['rows_per_s']} rows/s",
        flush=True,
    )
    if config.max_errors is not None and errors > config.max_errors:
        raise StopTransform(f"{errors} records failed, more than max_errors={config.max_errors}")
    return summary


def _merge_errors(paths: Paths, files: list[reading.InputFile], parts: list[str]) -> int:
    """One ``output/errors.jsonl``, ordered by file then row; the number of lines."""
    order = {f.rel: f.index for f in files}
    records: list[dict[str, Any]] = []
    for part in parts:
        with open(part, encoding="utf-8") as fh:
            records.extend(json.loads(line) for line in fh if line.strip())
    records.sort(key=lambda r: (order.get(r["file"], -1), r["row"]))
    if records:
        with open(paths.output / ERRORS_FILE, "w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record) + "\n")
    return len(records)


def _config_from_job() -> WorkerConfig:
    path = Path(os.environ["SM_INPUT_CONFIG_DIR"]) / "hyperparameters.json"
    return WorkerConfig.from_hyperparameters(json.loads(path.read_text(encoding="utf-8")))


def main() -> int:
    paths = Paths.from_env()
    try:
        config = _config_from_job()
        transform(config, paths)
    except StopTransform as exc:
        message = str(exc)
    except Exception as exc:  # anything else: the reason goes to output/failure
        traceback.print_exc()
        message = f"the transform failed: {_shorten(exc)}"
    else:
        shutil.rmtree(paths.model_folder, ignore_errors=True)
        return 0
    print(f"transform failed: {message}", file=sys.stderr, flush=True)
    paths.output.mkdir(parents=True, exist_ok=True)
    (paths.output / "failure").write_text(message, encoding="utf-8")
    return 1


if __name__ == "__main__":
    sys.exit(main())
