"""Reading dataset files: format detection, schemas, row counts and a locked-down SQL session.

A dataset version is a list of content-addressed objects (paths with no file extension)
that all share one format. Everything here streams: nothing loads a whole dataset into
memory. The other engines of the data domain (:mod:`.profiling`, :mod:`.quality`,
:mod:`.diff`) read data only through :func:`open_dataset` and :func:`duckdb_session`, so
file validation and the SQL sandbox live in one place.

Errors: a malformed file, mixed schemas across files or an unknown format raise
:class:`~modelyard.errors.InvalidInput` naming the file and the problem; a file that does
not exist raises :class:`~modelyard.errors.NotFound`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import ConfigDict

from modelyard.core.schema import Schema
from modelyard.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

# pyarrow and DuckDB are imported by the functions that use them, not here: the schemas
# of every domain import this module (for ColumnSchema and the format names), and a CLI
# command or a remote client that only lists things must not pay ~0.5 s and ~100 MB for
# the data engines it never calls.

Format = Literal["parquet", "csv", "jsonl"]
FORMATS: tuple[str, ...] = get_args(Format)

ColumnKind = Literal[
    "boolean", "integer", "float", "decimal", "string", "date", "timestamp", "time", "other"
]
"""How the engines treat a column: numeric kinds get moments, quantiles and histograms;
discrete kinds get top values; temporal kinds get min/max; ``other`` (lists, structs,
binary, durations…) gets only counts."""

NUMERIC_KINDS: frozenset[str] = frozenset({"integer", "float", "decimal"})
TEMPORAL_KINDS: frozenset[str] = frozenset({"date", "timestamp", "time"})

# Budget for one DuckDB session. DuckDB spills to a per-call temporary directory past
# the limit, so this bounds resident memory, not the size of data that can be processed.
DUCKDB_MEMORY_LIMIT = "1GB"

_EXTENSIONS: dict[str, Format] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


@dataclass(frozen=True)
class DataSource:
    """The files of one dataset version.

    ``files`` are object locations in ``filesystem`` (absolute or relative local paths
    when it is ``None``), all in ``format``. ``filesystem`` may be a
    :class:`pyarrow.fs.FileSystem` or any fsspec filesystem (``s3fs``…).

    CSV only: ``header=False`` reads the first row as data; the columns are then named
    ``column_names``, or ``_c0, _c1, …`` when that is ``None``.
    """

    files: list[str]
    format: Format
    filesystem: Any = None
    header: bool = True
    column_names: tuple[str, ...] | None = None


HEADERLESS_PREFIX = "_c"


class ColumnSchema(Schema):
    """One column of a dataset: its name, Arrow type (``str(pa.DataType)``) and nullability."""

    model_config = ConfigDict(frozen=True)

    name: str
    arrow_type: str
    nullable: bool


def detect_format(path_or_name: str, head: bytes) -> Format:
    """Guess the format of a file from its name, or from its first bytes when the name has
    no known extension (content-addressed objects have none).

    Known extensions: ``.parquet .pq .parq`` → parquet, ``.csv`` → csv,
    ``.jsonl .ndjson .json`` → jsonl. Sniffing: the Parquet magic ``PAR1`` → parquet; a
    first non-blank character ``{`` → jsonl; anything else → csv (the most permissive
    reader, which reports a clear error if the bytes are not CSV either).
    """
    suffix = PurePosixPath(path_or_name).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"{"):
        return "jsonl"
    return "csv"


def arrow_filesystem(filesystem: Any) -> pafs.FileSystem:
    """The pyarrow filesystem for ``DataSource.filesystem`` (fsspec ones are wrapped)."""
    import pyarrow.fs as pafs

    if filesystem is None:
        return pafs.LocalFileSystem()
    if isinstance(filesystem, pafs.FileSystem):
        return filesystem
    if hasattr(filesystem, "open") and hasattr(filesystem, "info"):
        return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
    raise InvalidInput(
        f"unsupported filesystem {type(filesystem).__name__!r}: "
        "expected None (local), a pyarrow.fs.FileSystem or an fsspec filesystem"
    )


def _check_source(src: DataSource) -> list[str]:
    if src.format not in FORMATS:
        raise InvalidInput(f"unknown dataset format {src.format!r}; accepted: {', '.join(FORMATS)}")
    if not src.files:
        raise InvalidInput("a dataset needs at least one file; got none")
    if src.filesystem is None:
        # pyarrow's local filesystem rejects relative paths; resolve them against the cwd.
        return [os.path.abspath(f) for f in src.files]
    return list(src.files)


def _file_format(
    fmt: Format, *, header: bool = True, column_names: Sequence[str] | None = None
) -> pads.FileFormat:
    import pyarrow.csv as pacsv
    import pyarrow.dataset as pads

    if fmt == "parquet":
        return pads.ParquetFileFormat()
    if fmt == "csv":
        if header:
            read = pacsv.ReadOptions()
        elif column_names is not None:
            read = pacsv.ReadOptions(column_names=list(column_names))
        else:
            read = pacsv.ReadOptions(autogenerate_column_names=True)
        # An empty field is a missing value, as for pandas and most CSV producers; pyarrow
        # would otherwise read it as an empty string in text columns.
        return pads.CsvFileFormat(
            read_options=read, convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
        )
    return pads.JsonFileFormat()


def _src_format(src: DataSource) -> pads.FileFormat:
    return _file_format(src.format, header=src.header, column_names=src.column_names)


def _inspect(src: DataSource, path: str, fs: pafs.FileSystem) -> pa.Schema:
    import pyarrow as pa

    fmt = src.format
    try:
        return _src_format(src).inspect(path, filesystem=fs)
    except FileNotFoundError as exc:
        raise NotFound(f"dataset file {path!r} does not exist") from exc
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInput(f"{path!r} is not a readable {fmt} file: {exc}") from exc


def _unify(fmt: Format, paths: list[str], schemas: list[pa.Schema]) -> pa.Schema:
    import pyarrow as pa

    first = schemas[0]
    names = first.names
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput(f"{paths[0]!r} has duplicate column names: {dupes}")
    unified = first
    for path, schema in zip(paths[1:], schemas[1:], strict=True):
        if set(schema.names) != set(names) or len(schema.names) != len(names):
            raise InvalidInput(
                f"mixed schemas: {path!r} has columns {schema.names}, but {paths[0]!r} has {names}"
            )
        try:
            # CSV and JSON types are inferred per file (a column of whole numbers in one
            # file and decimals in another), so widen numerics instead of rejecting them.
            unified = pa.unify_schemas([unified, schema], promote_options="permissive")
        except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
            raise InvalidInput(
                f"mixed schemas: {path!r} does not match {paths[0]!r}: {exc}"
            ) from exc
    # Keep the first file's column order (unify_schemas already does, this is defensive).
    return pa.schema([unified.field(n) for n in names], metadata=first.metadata)


@dataclass(frozen=True)
class _Opened:
    dataset: pads.Dataset
    paths: list[str]
    fs: pafs.FileSystem
    uniform: bool  # every file has exactly the dataset's schema


def _headerless_names(src: DataSource, path: str, fs: pafs.FileSystem) -> tuple[str, ...]:
    """``_c0, _c1, …``: one per field of ``path``'s first row."""
    width = len(_inspect(src, path, fs).names)  # pyarrow names them f0, f1, …
    return tuple(f"{HEADERLESS_PREFIX}{i}" for i in range(width))


def _open(src: DataSource, schema_override: pa.Schema | None = None) -> _Opened:
    import dataclasses

    import pyarrow as pa
    import pyarrow.dataset as pads

    paths = _check_source(src)
    fs = arrow_filesystem(src.filesystem)
    if src.format != "csv" and (not src.header or src.column_names is not None):
        raise InvalidInput(
            f"header and column names apply to CSV files only; this dataset is {src.format}"
        )
    if src.format == "csv" and not src.header:
        generated = _headerless_names(dataclasses.replace(src, column_names=None), paths[0], fs)
        if src.column_names is None:
            src = dataclasses.replace(src, column_names=generated)
        elif len(src.column_names) != len(generated):
            raise InvalidInput(
                f"{len(src.column_names)} column names given, but the rows of {paths[0]!r} "
                f"have {len(generated)} fields"
            )
    schemas = [_inspect(src, p, fs) for p in paths]
    schema = _unify(src.format, paths, schemas)
    uniform = all(s.equals(schema, check_metadata=False) for s in schemas)
    try:
        dataset = pads.dataset(
            paths, schema=schema_override or schema, format=_src_format(src), filesystem=fs
        )
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"could not open the {src.format} dataset: {exc}") from exc
    return _Opened(dataset, paths, fs, uniform)


def open_dataset(src: DataSource) -> pads.Dataset:
    """Open ``src`` as a streaming :class:`pyarrow.dataset.Dataset`.

    Every file's schema is read (Parquet footers; the first block of CSV/JSON lines files)
    and checked: all files must have the same column names, and types that differ must
    widen to a common type (int64 + double → double; null + any → any). The result's
    schema is that common type, columns in the first file's order. Row data is not read:
    a malformed row deep in a CSV file is reported by whatever scans it.
    """
    return _open(src).dataset


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def header_looks_like_data(src: DataSource) -> list[str] | None:
    """The first CSV file's header when it is probably a row of data, else None.

    Probably data: at least one name parses as a number and every such name heads a
    numeric column (``5.1,3.5,1.4,0.2,setosa`` over rows of the same shape), or every
    name parses as a number. A real header of a wide table (``country,2019,2020``) is
    caught too; its owner says so with ``header=True``. Only for ``csv`` read with a
    header; other sources give None.
    """
    if src.format != "csv" or not src.header or src.column_names is not None:
        return None
    path = _check_source(src)[0]
    schema = _inspect(src, path, arrow_filesystem(src.filesystem))
    numeric = [f for f in schema if _is_number(f.name)]
    if not numeric:
        return None
    if len(numeric) == len(schema.names) or all(
        column_kind(f.type) in NUMERIC_KINDS for f in numeric
    ):
        return list(schema.names)
    return None


def infer_schema(src: DataSource) -> list[ColumnSchema]:
    """The dataset's columns, in file order, as :class:`ColumnSchema` (see :func:`open_dataset`)."""
    schema = open_dataset(src).schema
    return [ColumnSchema(name=f.name, arrow_type=str(f.type), nullable=f.nullable) for f in schema]


def count_rows(src: DataSource) -> int:
    """Number of rows in all files together (Parquet: from footers, CSV/JSON: a scan)."""
    import pyarrow as pa

    dataset = open_dataset(src)
    try:
        return int(dataset.count_rows())
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"could not read the {src.format} dataset: {exc}") from exc


def column_kind(arrow_type: pa.DataType) -> ColumnKind:
    """Classify an Arrow type (see :data:`ColumnKind`); dictionaries take their value type."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_time(t):
        return "time"
    return "other"


def quote_ident(name: str) -> str:
    """``name`` as a SQL identifier (double quotes, embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """``value`` as a SQL string literal (single quotes, embedded quotes doubled).

    DuckDB's standard strings have no backslash escapes, so doubling is complete.
    """
    if "\x00" in value:
        raise InvalidInput("text values must not contain NUL characters")
    return "'" + value.replace("'", "''") + "'"


class DuckSession:
    """A DuckDB connection over one dataset, exposed as the view/table ``data``.

    Built only by :func:`duckdb_session`; by then the connection cannot read or write any
    file other than (at most) the dataset's own, and its configuration is locked.
    ``native_parquet`` says that DuckDB reads the files itself, so aggregates that Parquet
    footers answer (count, min, max) cost no scan.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, schema: pa.Schema, *, native_parquet: bool
    ) -> None:
        self.con = con
        self.schema = schema
        self.columns: list[str] = list(schema.names)
        self.native_parquet = native_parquet

    def kind(self, column: str) -> ColumnKind:
        return column_kind(self.schema.field(column).type)

    def require_columns(self, columns: Sequence[str], *, context: str) -> None:
        """Raise InvalidInput naming the unknown ones and listing those available."""
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise InvalidInput(
                f"{context}: unknown column(s) {unknown}; available columns: {self.columns}",
                details={"unknown": unknown, "available": self.columns},
            )

    def rows(
        self, sql: str, params: Sequence[object] | None = None, *, context: str
    ) -> list[tuple[Any, ...]]:
        """Run one query and fetch all rows; any DuckDB error becomes InvalidInput.

        Every query here reads the dataset, and the usual failure is the data (a CSV value
        that does not parse as its column's inferred type) or the caller's SQL, so the
        error is the client's: ``context`` says what was being computed.
        """
        import duckdb

        try:
            return self.con.execute(sql, list(params) if params else None).fetchall()
        except duckdb.Error as exc:
            raise InvalidInput(f"{context}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    # DuckDB appends a caret diagram of the query after the first line; keep the message.
    return str(exc).strip().split("\n\n")[0].strip()


def _duckdb_safe_schema(schema: pa.Schema) -> pa.Schema | None:
    """A schema DuckDB's Arrow scan accepts, or None when ``schema`` already is one.

    DuckDB cannot scan float16; pyarrow casts it to float32 while reading.
    """
    import pyarrow as pa

    fields = [f.with_type(pa.float32()) if pa.types.is_float16(f.type) else f for f in schema]
    if all(a.type == b.type for a, b in zip(fields, schema, strict=True)):
        return None
    return pa.schema(fields, metadata=schema.metadata)


def _usable_cores() -> int:
    # The cores this process may run on (a container's CPU set), not the host's count.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextmanager
def duckdb_session(
    src: DataSource, *, trusted_sql_only: bool = False, threads: int | None = None
) -> Iterator[DuckSession]:
    """Open a fresh in-process DuckDB connection with the dataset registered as ``data``.

    Sandbox, applied before the caller runs anything: ``enable_external_access=false``
    (no file, network or extension access), ``lock_configuration=true`` (SQL cannot undo
    it), a memory limit of :data:`DUCKDB_MEMORY_LIMIT` with spilling to a private
    temporary directory deleted afterwards, and ``threads`` (default: every core this
    process may use).

    The data normally comes from a pyarrow dataset scan, so DuckDB itself opens no file.
    When ``trusted_sql_only`` is true — the caller promises that every statement is built
    by modelyard from quoted identifiers and bound parameters, never user SQL — local
    Parquet files whose schemas are identical are read by DuckDB's native Parquet reader
    instead (several times faster, and it uses footer statistics). That reader needs the
    files in ``allowed_paths``, which would also let SQL *write* them, hence the promise.
    """
    import duckdb
    import pyarrow.fs as pafs

    opened = _open(src)
    schema: pa.Schema = opened.dataset.schema
    names_lower = [n.lower() for n in schema.names]
    clashes = sorted({n for n in schema.names if names_lower.count(n.lower()) > 1})
    if clashes:
        # SQL identifiers are case-insensitive even when quoted.
        raise InvalidInput(
            f"columns {clashes} differ only by letter case, which SQL cannot tell apart"
        )
    native = (
        trusted_sql_only
        and src.format == "parquet"
        and opened.uniform
        and isinstance(opened.fs, pafs.LocalFileSystem)
        and _duckdb_safe_schema(schema) is None
        # read_parquet() expands glob patterns; such a path could name other files.
        and not any(ch in p for p in opened.paths for ch in "*?[{")
    )
    with tempfile.TemporaryDirectory(prefix="modelyard-duckdb-") as spill:
        con = duckdb.connect(
            ":memory:",
            config={
                "threads": threads or _usable_cores(),
                "memory_limit": DUCKDB_MEMORY_LIMIT,
                "temp_directory": spill,
                # Aggregates do not need row order; dropping it lets scans stream freely.
                "preserve_insertion_order": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            },
        )
        try:
            if native:
                listing = ", ".join(quote_literal(p) for p in opened.paths)
                con.execute(f"SET allowed_paths = [{listing}]")
                con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet([{listing}])")
            else:
                safe = _duckdb_safe_schema(schema)
                dataset = _open(src, safe).dataset if safe is not None else opened.dataset
                try:
                    con.register("data", dataset)
                except duckdb.Error as exc:
                    raise InvalidInput(f"the SQL engine cannot read this dataset: {exc}") from exc
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            yield DuckSession(con, schema, native_parquet=native)
        finally:
            con.close()


def check_sql_expression(expr: str, *, context: str) -> None:
    """Reject anything but a single SQL expression, before DuckDB sees it.

    Refused: empty text, ``;`` (statement separators), comments, and parentheses that
    close more than they open (which could end the surrounding ``(...)`` and append
    clauses). String literals are tokenised, so ``';'`` inside quotes is fine. What the
    expression can *do* is limited by the session sandbox, not by this check.
    """
    import duckdb

    if not expr.strip():
        raise InvalidInput(f"{context}: the SQL expression is empty")
    try:
        tokens = duckdb.tokenize(expr)
    except duckdb.Error as exc:
        raise InvalidInput(f"{context}: cannot parse {expr!r}: {_first_line(exc)}") from exc
    # Token positions are byte offsets into the UTF-8 text. Whatever precedes the first
    # token is checked too, as an unquoted stretch.
    raw = expr.encode()
    starts = [0] + [pos for pos, _ in tokens] + [len(raw)]
    kinds = [None, *(kind for _, kind in tokens)]
    depth = 0
    for kind, pos, end in zip(kinds, starts[:-1], starts[1:], strict=True):
        text = raw[pos:end].decode(errors="replace")
        if kind == duckdb.token_type.comment:
            raise InvalidInput(f"{context}: comments are not allowed in {expr!r}")
        if kind == duckdb.token_type.string_const or text.startswith('"'):
            continue  # a quoted literal or identifier may contain any character
        for ch in text:
            if ch == ";":
                raise InvalidInput(
                    f"{context}: {expr!r} must be a single expression; ';' is not allowed"
                )
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    raise InvalidInput(f"{context}: unbalanced ')' in {expr!r}")
    if depth != 0:
        raise InvalidInput(f"{context}: unbalanced '(' in {expr!r}")
