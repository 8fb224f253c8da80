"""What XGBoost and LightGBM share: task families, label checks, ranking groups, channels.

Both libraries read Arrow tables of numeric columns directly, so features stay in Arrow
from the Parquet/CSV reader to the library (no pandas, no intermediate row-major copy);
only the label and query id become NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.algorithms._contract import Contract, DataError, HyperparameterError
from modelyard.algorithms._schemas import ColumnSpec, TabularHyperparameters
from modelyard.algorithms._tables import (
    Columns,
    check_numeric,
    column_specs,
    label_array,
    match_columns,
    numeric_features,
    read_channel,
    resolve_columns,
)

Task = Literal["binary", "multiclass", "regression", "ranking"]


@dataclass(frozen=True)
class Split:
    """One channel ready for a GBDT library: Arrow features, NumPy label and query ids.

    Rows of a ranking split are sorted by query so each query's rows are contiguous;
    ``order`` then holds the channel's row number of each sorted row.
    """

    name: str
    features: pa.Table
    label: npt.NDArray[np.float64] | None
    qid: npt.NDArray[np.int64] | None
    order: npt.NDArray[np.int64] | None = None

    def in_channel_order(self, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Per-row ``values`` (one per sorted row) back in the channel's row order."""
        if self.order is None:
            return values
        restored = np.empty_like(values)
        restored[self.order] = values
        return restored


@dataclass(frozen=True)
class GbdtData:
    """The train split, optional validation and test splits, and the input signature."""

    columns: Columns
    train: Split
    validation: Split | None
    test: Split | None
    num_class: int | None
    inputs: list[ColumnSpec]
    label: ColumnSpec | None
    group: ColumnSpec | None


def check_task_hyperparameters(
    contract: Contract,
    task: Task,
    objective: str,
    group: str | None,
    early_stopping_rounds: int | None,
) -> None:
    """Hyperparameter combinations that are wrong whatever the data: fail before reading."""
    if task == "ranking" and group is None:
        raise HyperparameterError(
            f"objective {objective} ranks rows within queries: set `group` to the query-id column"
        )
    if task != "ranking" and group is not None:
        raise HyperparameterError(
            f"`group` ({group!r}) is used only by ranking objectives, not {objective}"
        )
    if early_stopping_rounds is not None and contract.channel("validation") is None:
        raise HyperparameterError(
            "early_stopping_rounds needs a validation channel to watch; add one or unset it"
        )


def load_gbdt_data(
    contract: Contract,
    hps: TabularHyperparameters,
    *,
    algorithm: str,
    task: Task,
    group: str | None,
    num_class: int | None,
) -> GbdtData:
    """Read and check the train, validation and test channels for a GBDT library.

    Raises DataError for a missing or empty train channel, a missing label or group
    column, non-numeric features, or labels the task cannot take; validation rows must
    have labels (they drive metrics and early stopping), test rows may lack them.
    """
    header = hps.label_column_index is None
    train_table = read_channel(contract, "train", required=True, csv_header=header)
    assert train_table is not None
    columns = resolve_columns(
        train_table,
        "train",
        label=hps.label,
        label_index=hps.label_column_index,
        group=group,
    )
    check_numeric(train_table, columns.features, "train", algorithm)
    train = _split(train_table, "train", columns, task)
    assert train.label is not None
    num_class = check_labels(train.label, "train", task, num_class, algorithm)
    splits: dict[str, Split | None] = {}
    for name in ("validation", "test"):
        table = read_channel(contract, name, required=False, csv_header=header)
        if table is None:
            splits[name] = None
            continue
        matched = match_columns(table, name, columns, label_required=name == "validation")
        check_numeric(table, matched.features, name, algorithm)
        split = _split(table, name, matched, task)
        if split.label is not None:
            check_labels(split.label, name, task, num_class, algorithm)
        splits[name] = split
    return GbdtData(
        columns=columns,
        train=train,
        validation=splits["validation"],
        test=splits["test"],
        num_class=num_class,
        inputs=column_specs(train_table, columns.features),
        label=column_specs(train_table, [columns.label])[0] if columns.label else None,
        group=column_specs(train_table, [columns.group])[0] if columns.group else None,
    )


def _split(table: pa.Table, name: str, columns: Columns, task: Task) -> Split:
    qid = order = None
    if task == "ranking":
        assert columns.group is not None
        table, qid, order = _sort_by_query(table, columns.group, name)
    label = label_array(table, columns.label, name) if columns.label else None
    if label is not None and label.dtype.kind == "U":
        raise DataError(
            f"label column '{columns.label}' in channel '{name}' holds text; gradient "
            "boosting needs numeric labels"
        )
    return Split(name, numeric_features(table, columns.features), label, qid, order)


def _sort_by_query(
    table: pa.Table, group: str, channel: str
) -> tuple[pa.Table, npt.NDArray[np.int64], npt.NDArray[np.int64] | None]:
    """Rows sorted by query (stable) unless already sorted, query ids numbered 0, 1, ...
    in that order, and the sorting permutation (None when the rows were already sorted)."""
    column = table.column(group)
    if column.null_count:
        raise DataError(f"group column '{group}' in channel '{channel}' has missing values")
    keys = column.to_numpy(zero_copy_only=False)
    order = None
    if keys.dtype == object or not bool(np.all(keys[1:] >= keys[:-1])):
        indices = pc.sort_indices(table, sort_keys=[(group, "ascending")])
        table = table.take(indices)
        column = table.column(group)
        order = np.asarray(indices.to_numpy(), dtype=np.int64)
    codes = column.dictionary_encode().combine_chunks().indices
    return table, np.asarray(codes.to_numpy(), dtype=np.int64), order


def check_labels(
    label: npt.NDArray[np.float64], channel: str, task: Task, num_class: int | None, algorithm: str
) -> int | None:
    """Check labels against the task; returns the number of classes for multiclass.

    binary: 0 or 1. multiclass: whole numbers 0..num_class-1 (num_class defaults to the
    largest training label + 1). ranking: whole numbers >= 0. regression: finite numbers.
    """
    if not np.all(np.isfinite(label)):
        raise DataError(f"label column in channel '{channel}' has NaN or infinite values")
    if task == "binary":
        bad = np.unique(label[(label != 0) & (label != 1)])
        if bad.size:
            raise DataError(
                f"binary objectives need labels 0 or 1; channel '{channel}' has {_sample(bad)}"
            )
        return None
    if task in ("multiclass", "ranking"):
        bad = np.unique(label[(label < 0) | (label != np.round(label))])
        if bad.size:
            raise DataError(
                f"{task} labels must be whole numbers >= 0; channel '{channel}' has {_sample(bad)}"
            )
    if task != "multiclass":
        return None
    largest = int(label.max()) if label.size else 0
    if num_class is None:
        num_class = max(largest + 1, 2)
    elif largest >= num_class:
        raise DataError(
            f"num_class is {num_class} but channel '{channel}' has label {largest}; "
            f"{algorithm} multiclass labels must be 0..num_class-1"
        )
    return num_class


def _sample(values: npt.NDArray[Any], limit: int = 5) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return shown + (f" ... ({values.size} distinct)" if values.size > limit else "")


def parse_metrics(text: str | None) -> list[str]:
    """Comma-separated metric names, blanks dropped."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def check_multi_host(contract: Contract, task: Task, num_class: int | None, algorithm: str) -> None:
    """What data-parallel training across hosts needs beyond one host's checks.

    Each host reads only its shard of ``train``, so the number of classes cannot be
    inferred from the labels: a multi-host multiclass job must set ``num_class``.
    """
    if contract.cluster.size > 1 and task == "multiclass" and num_class is None:
        raise HyperparameterError(
            f"a multi-host {algorithm} multiclass job must set num_class: each host sees "
            "only its shard of the train channel"
        )
