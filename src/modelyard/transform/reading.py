"""Streaming readers of transform input files: mini-batches of Arrow record batches.

Nothing here reads a whole file into memory: Parquet is read row group by row group,
CSV through Arrow's streaming reader, JSONL a block of lines at a time. Each reader
yields ``(first_row, batch)`` where ``first_row`` is the 0-based position of the batch's
first record in the file (CSV: data rows, after the header row if the file has one;
JSONL: lines), so a failed
record can be reported where it is.

CSV and JSONL column types are inferred from the start of the file (Arrow's first
block); the values of every later batch are parsed to those types by :func:`parse`,
inside the step that may fail per record, so one bad value fails one record, not the
file.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

Batch = tuple[int, pa.RecordBatch]
CSV_BLOCK_BYTES = 1 << 20


@dataclass
class InputFile:
    """One input file: its position among the job's files and its dataset path."""

    index: int
    rel: str
    path: Path
    # Types the raw (string) columns of a CSV/JSONL batch are parsed to; None: as read.
    types: pa.Schema | None = None
    # A CSV file without a header row: its column names (None: the first row is the header).
    column_names: list[str] | None = None
    # Records the reader itself had to skip (a CSV line with the wrong number of fields).
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def file_row(self, position: int) -> int:
        """The row in the file of the ``position``-th record read (skipped lines counted)."""
        row = position
        for skipped, _ in sorted(self.skipped):
            if 0 <= skipped <= row:
                row += 1
        return row


def count_rows(fmt: str, path: Path) -> int | None:
    """Rows in the file when that is cheap to know (Parquet footers), else None."""
    if fmt == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def _concat(pieces: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One record batch of the pieces (no copy for a single piece)."""
    if len(pieces) == 1:
        return pieces[0]
    return pa.Table.from_batches(pieces).combine_chunks().to_batches()[0]


def _rebatch(batches: Iterator[pa.RecordBatch], size: int | None) -> Iterator[Batch]:
    """Cut a stream of record batches into mini-batches of ``size`` rows (None: one)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    start = 0
    for batch in batches:
        if size is None:
            pending.append(batch)
            held += batch.num_rows
            continue
        while batch.num_rows:
            take = min(size - held, batch.num_rows)
            pending.append(batch if take == batch.num_rows else batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == size:
                yield start, _concat(pending)
                start += held
                pending, held = [], 0
    if held:
        yield start, _concat(pending)


def _parquet(src: InputFile, size: int | None) -> Iterator[Batch]:
    reader = pq.ParquetFile(src.path)
    step = size if size is not None else max(1, reader.metadata.num_rows)
    yield from _rebatch(reader.iter_batches(batch_size=step), size)


def _csv(src: InputFile, size: int | None) -> Iterator[Batch]:
    # Inference from the first block gives the target types; the stream itself reads every
    # column as text so that a stray value cannot break the reader.
    names = src.column_names
    first = pacsv.open_csv(
        src.path,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, column_names=names),
        parse_options=pacsv.ParseOptions(invalid_row_handler=lambda _row: "skip"),
    )
    src.types = first.schema
    first.close()

    def skip(row: pacsv.InvalidRow) -> str:
        number = row.number if row.number is not None else -1
        # number counts lines from 1, the header line (if there is one) included.
        src.skipped.append(
            (
                number - (1 if names is not None else 2) if number > 0 else -1,
                f"expected {row.expected_columns} fields, "
                f"got {row.actual_columns}: {row.text[:200]!r}",
            )
        )
        return "skip"

    reader = pacsv.open_csv(
        src.path,
        read_options=pacsv.ReadOptions(
            block_size=CSV_BLOCK_BYTES, use_threads=False, column_names=names
        ),
        parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in src.types.names},
            strings_can_be_null=True,
        ),
    )
    yield from _rebatch(iter(reader), size)


def _jsonl_block(lines: list[bytes], schema: pa.Schema | None) -> pa.RecordBatch:
    options = (
        pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        if schema is not None
        else pajson.ParseOptions()
    )
    table = pajson.read_json(io.BytesIO(b"\n".join(lines)), parse_options=options)
    return table.combine_chunks().to_batches()[0] if table.num_rows else _empty(table.schema)


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def _jsonl(src: InputFile, size: int | None) -> Iterator[Batch]:
    """Blocks of lines, each kept as raw text in one column until :func:`parse`."""
    start = 0
    block: list[bytes] = []
    with open(src.path, "rb") as fh:
        for line in fh:
            block.append(line.rstrip(b"\r\n"))
            if size is not None and len(block) == size:
                yield start, _raw_lines(block)
                start += len(block)
                block = []
    if block:
        yield start, _raw_lines(block)


def _raw_lines(lines: list[bytes]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(lines, pa.binary())], names=[RAW_LINE])


RAW_LINE = "__modelyard_line__"


def batches(fmt: str, src: InputFile, size: int | None) -> Iterator[Batch]:
    """Mini-batches of ``size`` rows (None: the whole file as one) of one input file."""
    if fmt == "parquet":
        return _parquet(src, size)
    if fmt == "csv":
        return _csv(src, size)
    if fmt == "jsonl":
        return _jsonl(src, size)
    raise ValueError(f"unknown format {fmt!r}; use parquet, csv or jsonl")


def parse(fmt: str, src: InputFile, batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with its values in their column types (raises for a bad value).

    Parquet batches are already typed. CSV text is cast to the types inferred from the
    start of the file. JSONL lines are parsed, blank lines give no record.
    """
    if fmt == "csv":
        assert src.types is not None
        arrays = [
            _cast(batch.column(i), src.types.field(i).type, name)
            for i, name in enumerate(batch.schema.names)
        ]
        return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
    if fmt == "jsonl":
        lines = [line for line in batch.column(0).to_pylist() if line and line.strip()]
        if not lines:
            return _empty(src.types or pa.schema([]))
        parsed = _jsonl_block(lines, src.types)
        if src.types is None:
            src.types = parsed.schema
        return parsed
    return batch


def _cast(column: pa.Array, target: pa.DataType, name: str) -> pa.Array:
    if target == pa.string() or target == pa.null():
        return column if target == pa.string() else column.cast(pa.string())
    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"column {name!r}: {exc}") from None


ParseFn = Callable[[pa.RecordBatch], pa.RecordBatch]
