"""Reading channels into Arrow tables, and turning tables and rows into feature matrices.

A channel is a folder of files in one or more formats, detected from content, not from
the name (SageMaker channels often hold extension-less objects): Parquet starts with the
magic bytes ``PAR1``; JSON lines start with ``{``; anything else is CSV with a header row
(or without one, when the algorithm is told the label's column position). Files are read
in sorted path order, recursively; names starting with ``.`` or ``_`` (``_SUCCESS``,
``.crc``) are skipped, as Spark and Hadoop writers expect.

Every problem raises :class:`~modelyard.algorithms._contract.DataError` naming the channel,
the file or column, and what the algorithm accepts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from modelyard.algorithms._contract import Contract, DataError
from modelyard.algorithms._schemas import ColumnSpec

Format = Literal["parquet", "jsonl", "csv"]
PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 4096


def channel_files(channel: str, folder: Path) -> list[Path]:
    """The data files of a channel folder, sorted; DataError when it has none."""
    if not folder.is_dir():
        raise DataError(f"channel '{channel}' folder {folder} does not exist")
    files = [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and not any(part.startswith((".", "_")) for part in path.relative_to(folder).parts)
    ]
    if not files:
        raise DataError(f"channel '{channel}' is empty: no data files in {folder}")
    return files


def sniff_format(path: Path) -> Format:
    """Parquet by magic bytes, JSON lines by a leading ``{``, else CSV."""
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    return "csv"


def read_file(path: Path, *, csv_header: bool = True) -> pa.Table:
    """One file as a table; ``csv_header=False`` names CSV columns f0, f1, ... by position."""
    fmt = sniff_format(path)
    if fmt == "parquet":
        return pq.read_table(path)
    if fmt == "jsonl":
        return pajson.read_json(path)
    if path.stat().st_size == 0:
        return pa.table({})
    options = pacsv.ReadOptions(autogenerate_column_names=not csv_header)
    return pacsv.read_csv(path, read_options=options)


def read_channel(
    contract: Contract, channel: str, *, required: bool, csv_header: bool = True
) -> pa.Table | None:
    """All rows of ``channel`` as one table, or ``None`` when the job has no such channel.

    Raises DataError when a required channel is absent, when a present channel has no rows
    (a channel that is given but empty is always a mistake), when a file cannot be parsed,
    or when files disagree on their columns.
    """
    folder = contract.channel(channel)
    if folder is None:
        if required:
            known = ", ".join(sorted(contract.channels)) or "none"
            raise DataError(
                f"channel '{channel}' is required (SM_CHANNEL_{channel.upper()}); "
                f"channels given: {known}"
            )
        return None
    tables = []
    for path in channel_files(channel, folder):
        try:
            table = read_file(path, csv_header=csv_header)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"channel '{channel}': cannot read {path}: {exc}") from None
        if table.num_rows:
            tables.append((path, table))
    if not tables:
        raise DataError(f"channel '{channel}' is empty: its files in {folder} have no rows")
    first_path, first = tables[0]
    for path, table in tables[1:]:
        if table.column_names != first.column_names:
            raise DataError(
                f"channel '{channel}': {path} has columns {table.column_names} but "
                f"{first_path} has {first.column_names}; all files must have the same columns"
            )
    try:
        return pa.concat_tables([t for _, t in tables], promote_options="permissive")
    except pa.ArrowException as exc:
        raise DataError(f"channel '{channel}': files have incompatible types: {exc}") from None


@dataclass(frozen=True)
class Columns:
    """The roles of a table's columns: features (in order), label and query group."""

    features: tuple[str, ...]
    label: str | None = None
    group: str | None = None


def resolve_columns(
    table: pa.Table,
    channel: str,
    *,
    label: str | None,
    label_index: int | None = None,
    label_required: bool = True,
    group: str | None = None,
) -> Columns:
    """Pick the label (by name, or by position for headerless CSV), group and features.

    Every column that is neither label nor group is a feature, in table order.
    """
    names = table.column_names
    if label_index is not None:
        if label_index >= len(names):
            raise DataError(
                f"label_column_index {label_index} is out of range: channel '{channel}' "
                f"has {len(names)} columns"
            )
        label = names[label_index]
    elif label is not None and label not in names:
        if label_required:
            raise DataError(
                f"channel '{channel}' has no label column '{label}'; its columns are "
                f"{_listing(names)}. Set the `label` hyperparameter to the label column, or "
                "`label_column_index` for headerless CSV."
            )
        label = None
    if group is not None and group not in names:
        raise DataError(
            f"channel '{channel}' has no group column '{group}' (the `group` "
            f"hyperparameter); its columns are {_listing(names)}"
        )
    features = tuple(name for name in names if name not in (label, group))
    if not features:
        raise DataError(f"channel '{channel}' has no feature columns besides the label")
    return Columns(features, label, group)


def match_columns(
    table: pa.Table, channel: str, train: Columns, *, label_required: bool
) -> Columns:
    """Check that another channel has the training features (and label, when required)."""
    names = set(table.column_names)
    missing = [name for name in train.features if name not in names]
    if train.group is not None and train.group not in names:
        missing.append(train.group)
    if missing:
        raise DataError(
            f"channel '{channel}' lacks column(s) {_listing(missing)} that the train channel has"
        )
    label = train.label if train.label in names else None
    if label is None and train.label is not None and label_required:
        raise DataError(f"channel '{channel}' has no label column '{train.label}'")
    return Columns(train.features, label, train.group)


def _numeric(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_boolean(arrow_type)
        or pa.types.is_decimal(arrow_type)
        or pa.types.is_null(arrow_type)
    )


def check_numeric(table: pa.Table, features: Sequence[str], channel: str, algorithm: str) -> None:
    """DataError naming every non-numeric feature column and its type."""
    bad = [
        f"{name} ({table.schema.field(name).type})"
        for name in features
        if not _numeric(table.schema.field(name).type)
    ]
    if bad:
        raise DataError(
            f"feature column(s) {', '.join(bad)} in channel '{channel}' are not numeric; "
            f"{algorithm} needs numeric features: encode or drop them (or name the label "
            "column with the `label` hyperparameter)"
        )


def numeric_features(table: pa.Table, features: Sequence[str]) -> pa.Table:
    """The feature columns as an Arrow table the GBDT libraries read without copying.

    Decimal and all-null columns become float64; other numeric types are kept.
    """
    selected = table.select(list(features))
    for index, column in enumerate(selected.columns):
        if pa.types.is_decimal(column.type) or pa.types.is_null(column.type):
            selected = selected.set_column(
                index, selected.field(index).name, column.cast(pa.float64())
            )
    return selected


def feature_matrix(
    table: pa.Table,
    features: Sequence[str],
    channel: str,
    *,
    dtype: npt.DTypeLike = np.float64,
    allow_missing: bool = False,
    algorithm: str = "",
) -> npt.NDArray[Any]:
    """The feature columns as a C-ordered ``(rows, features)`` array; nulls become NaN.

    With ``allow_missing=False`` a null or NaN raises DataError naming the columns.
    """
    out = np.empty((table.num_rows, len(features)), dtype=dtype)
    for j, name in enumerate(features):
        out[:, j] = table.column(name).cast(pa.float64()).to_numpy()
    if not allow_missing:
        holes = np.isnan(out).any(axis=0)
        if holes.any():
            names = [features[int(j)] for j in np.flatnonzero(holes)]
            raise DataError(
                f"feature column(s) {_listing(names)} in channel '{channel}' have missing "
                f"values; {algorithm or 'this algorithm'} needs complete rows: impute or "
                "drop them"
            )
    return out


def label_array(table: pa.Table, label: str, channel: str) -> npt.NDArray[Any]:
    """The label column as NumPy: float64 for numeric labels, str for text labels."""
    column = table.column(label)
    if column.null_count:
        raise DataError(
            f"label column '{label}' in channel '{channel}' has {column.null_count} "
            "missing value(s)"
        )
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return np.asarray(column.to_pylist(), dtype=str)
    if not _numeric(column.type):
        raise DataError(
            f"label column '{label}' in channel '{channel}' has type {column.type}; "
            "expected numbers or strings"
        )
    return np.asarray(column.cast(pa.float64()).to_numpy(), dtype=np.float64)


def column_specs(table: pa.Table, names: Sequence[str]) -> list[ColumnSpec]:
    """Signature entries for ``names``: each column's name and Arrow type."""
    return [ColumnSpec(name=name, type=str(table.schema.field(name).type)) for name in names]


def as_matrix(data: Any, features: Sequence[str], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """Prediction input as a ``(rows, features)`` array in signature order.

    Accepts a 2-D array or a sequence of positional rows (columns in signature order), a
    single 1-D row, a sequence of mappings keyed by feature name, a ``pyarrow.Table`` or a
    pandas DataFrame (columns selected by name). Raises ValueError naming what is wrong.
    """
    if isinstance(data, pa.Table):
        missing = [name for name in features if name not in data.column_names]
        if missing:
            raise ValueError(f"input lacks feature column(s) {_listing(missing)}")
        return feature_matrix(data, features, "input", dtype=dtype, allow_missing=True)
    if type(data).__module__.startswith("pandas"):
        return as_matrix(pa.Table.from_pandas(data, preserve_index=False), features, dtype)
    if isinstance(data, Sequence) and data and isinstance(data[0], Mapping):
        rows: list[list[Any]] = []
        for number, row in enumerate(data):
            missing = [name for name in features if name not in row]
            if missing:
                raise ValueError(f"row {number} lacks feature(s) {_listing(missing)}")
            rows.append([row[name] for name in features])
        data = rows
    try:
        matrix = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"input is not numeric rows of {len(features)} features: {exc}") from None
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise ValueError(
            f"input has shape {matrix.shape}; expected (rows, {len(features)}) with columns "
            f"{_listing(features)}"
        )
    return np.ascontiguousarray(matrix)


def _listing(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


@dataclass(frozen=True)
class NumericSplit:
    """One channel as a float64 feature matrix and, when present, its label array."""

    name: str
    features: npt.NDArray[np.float64]
    label: npt.NDArray[Any] | None


@dataclass(frozen=True)
class NumericData:
    """Train, validation and test splits of a numeric table, and the input signature."""

    columns: Columns
    train: NumericSplit
    validation: NumericSplit | None
    test: NumericSplit | None
    inputs: list[ColumnSpec]
    label: ColumnSpec | None


def read_numeric(
    contract: Contract,
    algorithm: str,
    *,
    label: str | None,
    label_index: int | None = None,
    label_required: bool = True,
    feature_dim: int | None = None,
) -> NumericData:
    """Read train (required), validation and test (optional) as complete numeric matrices.

    ``label=None`` makes every column a feature (unsupervised algorithms). With
    ``label_required`` the train and validation channels must have the label column; the
    test channel may lack it. ``feature_dim``, when given, must equal the feature count.
    Raises DataError naming the channel and the problem.
    """
    header = label_index is None
    train_table = read_channel(contract, "train", required=True, csv_header=header)
    assert train_table is not None
    columns = resolve_columns(
        train_table,
        "train",
        label=label,
        label_index=label_index,
        label_required=label_required,
    )
    # An optional label absent from train may still label the validation and test rows.
    wanted = Columns(columns.features, columns.label or (label if label_index is None else None))
    if feature_dim is not None and feature_dim != len(columns.features):
        raise DataError(
            f"feature_dim is {feature_dim} but channel 'train' has {len(columns.features)} "
            f"feature columns"
        )
    splits: dict[str, NumericSplit | None] = {}
    for name in ("train", "validation", "test"):
        table = (
            train_table
            if name == "train"
            else read_channel(contract, name, required=False, csv_header=header)
        )
        if table is None:
            splits[name] = None
            continue
        matched = (
            columns
            if name == "train"
            else match_columns(
                table, name, wanted, label_required=label_required and name != "test"
            )
        )
        check_numeric(table, matched.features, name, algorithm)
        splits[name] = NumericSplit(
            name,
            feature_matrix(table, matched.features, name, algorithm=algorithm),
            label_array(table, matched.label, name) if matched.label else None,
        )
    train = splits["train"]
    assert train is not None
    return NumericData(
        columns=columns,
        train=train,
        validation=splits["validation"],
        test=splits["test"],
        inputs=column_specs(train_table, columns.features),
        label=column_specs(train_table, [columns.label])[0] if columns.label else None,
    )


def class_labels(label: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Class labels as given: text stays text, whole numbers become int64."""
    if label.dtype.kind == "f" and np.all(np.isfinite(label)) and np.all(label == np.round(label)):
        return label.astype(np.int64)
    return label


def numeric_labels(
    label: npt.NDArray[Any], channel: str, algorithm: str
) -> npt.NDArray[np.float64]:
    """Labels for regression: DataError when they are text or not finite."""
    if label.dtype.kind not in "fiu":
        raise DataError(
            f"label column in channel '{channel}' holds text; {algorithm} regression needs "
            "numeric labels"
        )
    values = label.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise DataError(f"label column in channel '{channel}' has NaN or infinite values")
    return values
