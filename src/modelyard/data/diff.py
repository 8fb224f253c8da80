"""Differences between two dataset versions: schema, row count and distribution shift.

For every column present in both versions with comparable kinds:

- numeric (integers, floats, decimals; dates and timestamps as epoch seconds): the
  population stability index (PSI) over bins whose edges are quantiles of version ``a``,
  and the change of the mean in units of ``a``'s standard deviation;
- categorical (strings, booleans): the total variation distance (TVD) between the shares
  of ``a``'s most frequent values, every other value pooled as one "other" bucket.

A column is ``shifted`` when PSI > :data:`PSI_THRESHOLD` or TVD > :data:`TVD_THRESHOLD`
(the conventional "significant change" levels). Shares are of non-null (and, for floats,
finite) values: a change in the share of nulls is reported as ``missing_ratio_a/b``, not
as shift.

Scans: ``a`` twice (a sample for bin edges and candidate values, then counts), ``b``
once. A stored profile of ``a`` supplies the candidate values.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

from modelyard.core.schema import Schema
from modelyard.data.formats import (
    NUMERIC_KINDS,
    TEMPORAL_KINDS,
    ColumnSchema,
    DataSource,
    DuckSession,
    duckdb_session,
    quote_ident,
)
from modelyard.data.profiling import SAMPLE_ROWS, DatasetProfile, JSONScalar
from modelyard.errors import InvalidInput

PSI_THRESHOLD = 0.2
TVD_THRESHOLD = 0.1
# Floor on a bucket's share in the PSI sum: an empty bucket would make ln(b/a) infinite.
PSI_EPSILON = 1e-4
# How many of a's most frequent values get their own bucket in the TVD (when no profile
# of a supplies them); the same as profile()'s default top_k.
CATEGORIES = 10

_NUMERIC_LIKE = NUMERIC_KINDS | {"date", "timestamp"}
_CATEGORICAL = frozenset({"string", "boolean"})


class TypeChange(Schema):
    name: str
    old: str
    new: str


class SchemaChanges(Schema):
    """Columns only in ``b`` (added), only in ``a`` (removed), and in both with different
    Arrow types; each list in column order of the version it comes from."""

    added: list[ColumnSchema]
    removed: list[ColumnSchema]
    type_changed: list[TypeChange]


class Bucket(Schema):
    """One bucket of a shift computation: a bin ``[lo, hi)`` of a numeric column or a
    category (``"(other)"`` pools the rest) and its share of each version's values."""

    label: str
    share_a: float
    share_b: float


class ColumnShift(Schema):
    """Distribution shift of one column present in both versions.

    ``psi`` and ``mean_shift_std`` are set for numeric columns, ``tvd`` for categorical
    ones; all are None when either version has no values to compare. ``mean_shift_std``
    is ``(mean_b - mean_a) / std_a`` (None when ``a``'s std is 0 or undefined).
    ``missing_ratio_a/b`` are the shares of rows without a comparable value: nulls, and
    NaN or infinities in float columns.
    """

    name: str
    kind: Literal["numeric", "categorical"]
    missing_ratio_a: float
    missing_ratio_b: float
    psi: float | None = None
    mean_shift_std: float | None = None
    tvd: float | None = None
    shifted: bool
    buckets: list[Bucket]


class DatasetDiff(Schema):
    """What changed from version ``a`` to version ``b``; ``columns`` lists the comparable
    columns in ``a``'s order (columns whose kinds differ, e.g. int → string, appear only in
    ``schema_changes``)."""

    schema_changes: SchemaChanges
    row_count_a: int
    row_count_b: int
    row_count_delta: int
    columns: list[ColumnShift]


def diff(
    a: DataSource,
    b: DataSource,
    *,
    profile_a: DatasetProfile | None = None,
    profile_b: DatasetProfile | None = None,
    bins: int = 10,
) -> DatasetDiff:
    """Compare version ``a`` (the baseline) with version ``b``.

    ``bins`` (2 to 100) quantile bins of ``a`` per numeric column (fewer when quantiles
    coincide, e.g. for a column of mostly zeros). ``profile_a``, when given, must be a
    profile of exactly version ``a``: its ``top_values`` become the categorical buckets
    (otherwise a heavy-hitter sketch of ``a`` picks :data:`CATEGORIES` values).
    ``profile_b`` is accepted for symmetry; ``b`` is scanned once either way and nothing
    in its profile would save work. Raises InvalidInput for unreadable data.
    """
    del profile_b  # b is scanned once in any case; its profile has nothing to save
    if not 2 <= bins <= 100:
        raise InvalidInput(f"bins must be between 2 and 100; got {bins}")
    with (
        duckdb_session(a, trusted_sql_only=True) as sa,
        duckdb_session(b, trusted_sql_only=True) as sb,
    ):
        schema_a = _schema(sa)
        schema_b = _schema(sb)
        changes = SchemaChanges(
            added=[c for n, c in schema_b.items() if n not in schema_a],
            removed=[c for n, c in schema_a.items() if n not in schema_b],
            type_changed=[
                TypeChange(name=n, old=c.arrow_type, new=schema_b[n].arrow_type)
                for n, c in schema_a.items()
                if n in schema_b and c.arrow_type != schema_b[n].arrow_type
            ],
        )
        numeric, categorical = _comparable(sa, sb)
        edges, candidates = _baseline(sa, numeric, categorical, bins, profile_a)
        counts_a = _counts(sa, numeric, categorical, edges, candidates)
        counts_b = _counts(sb, numeric, categorical, edges, candidates)

    shifts: list[ColumnShift] = []
    for name in sa.columns:
        if name in numeric:
            shifts.append(_numeric_shift(name, edges[name], counts_a, counts_b))
        elif name in categorical:
            shifts.append(_categorical_shift(name, candidates[name], counts_a, counts_b))
    rows_a, rows_b = counts_a.row_count, counts_b.row_count
    return DatasetDiff(
        schema_changes=changes,
        row_count_a=rows_a,
        row_count_b=rows_b,
        row_count_delta=rows_b - rows_a,
        columns=shifts,
    )


def _schema(session: DuckSession) -> dict[str, ColumnSchema]:
    return {
        f.name: ColumnSchema(name=f.name, arrow_type=str(f.type), nullable=f.nullable)
        for f in session.schema
    }


def _comparable(sa: DuckSession, sb: DuckSession) -> tuple[list[str], list[str]]:
    numeric: list[str] = []
    categorical: list[str] = []
    for name in sa.columns:
        if name not in sb.columns:
            continue
        ka, kb = sa.kind(name), sb.kind(name)
        if (
            ka in _NUMERIC_LIKE
            and kb in _NUMERIC_LIKE
            and (ka in TEMPORAL_KINDS) == (kb in TEMPORAL_KINDS)
        ):
            numeric.append(name)
        elif ka in _CATEGORICAL and ka == kb:
            categorical.append(name)
    return numeric, categorical


def _value_expr(session: DuckSession, name: str) -> str:
    """The column as a DOUBLE: finite floats only, temporals as epoch seconds."""
    col = quote_ident(name)
    kind = session.kind(name)
    if kind == "float":
        return f"CASE WHEN isfinite({col}) THEN CAST({col} AS DOUBLE) END"
    if kind in TEMPORAL_KINDS:
        return f"epoch({col})"
    return f"CAST({col} AS DOUBLE)"


def _baseline(
    sa: DuckSession,
    numeric: list[str],
    categorical: list[str],
    bins: int,
    profile_a: DatasetProfile | None,
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Interior bin edges (quantiles of ``a``) and candidate categories (``a``'s most
    frequent values) — one scan of ``a``, or none when the profile has them all."""
    known: dict[str, list[Any]] = {}
    if profile_a is not None:
        for col in profile_a.columns:
            # A profile lists at most its top_k values; fewer than CATEGORIES is still a
            # valid candidate set (the rest is pooled), so use what it has.
            if col.name in categorical and col.top_values:
                known[col.name] = [t.value for t in col.top_values]
    exprs: list[str] = []
    probs = ", ".join(repr(i / bins) for i in range(1, bins))
    for name in numeric:
        exprs.append(f"quantile_cont({_value_expr(sa, name)}, [{probs}])")
    todo = [n for n in categorical if n not in known]
    for name in todo:
        exprs.append(f"approx_top_k({quote_ident(name)}, {CATEGORIES})")
    if not exprs:
        return {}, known
    # A uniform sample (the whole of a small dataset): bin edges need not be exact, only
    # the same for both versions, and the bin counts of the next scan are exact.
    sample = f"USING SAMPLE {SAMPLE_ROWS} ROWS (reservoir)"
    sql = f"SELECT {', '.join(exprs)} FROM data {sample}"
    row = sa.rows(sql, context="diff: reading version a")[0]
    edges = {
        name: sorted({float(v) for v in (row[i] or []) if v is not None and math.isfinite(v)})
        for i, name in enumerate(numeric)
    }
    for j, name in enumerate(todo):
        known[name] = [v for v in (row[len(numeric) + j] or []) if v is not None]
    return edges, known


@dataclass
class _Counts:
    """What one scan of a version found, per compared column."""

    row_count: int
    values: dict[str, int]  # non-null (and, for floats, finite) values
    hist: dict[str, dict[Any, int]]  # bin index or category -> count
    mean: dict[str, float | None]
    std: dict[str, float | None]


def _counts(
    session: DuckSession,
    numeric: list[str],
    categorical: list[str],
    edges: dict[str, list[float]],
    candidates: dict[str, list[Any]],
) -> _Counts:
    """One scan: per numeric column the bin counts, mean and std; per categorical column
    the exact counts of the candidate values."""
    exprs = ["count(*)"]
    params: list[object] = []
    for name in numeric:
        x = _value_expr(session, name)
        # The bin index is the number of edges at or below the value: a branch-free sum.
        index = " + ".join(f"CAST(({x}) >= ? AS INTEGER)" for _ in edges[name]) or "0"
        exprs += [
            f"count({x})",
            f"histogram(CASE WHEN ({x}) IS NOT NULL THEN {index} END)",
            f"avg({x})",
            f"stddev_samp({x})",
        ]
        params.extend(edges[name])
    for name in categorical:
        col = quote_ident(name)
        cands = candidates.get(name) or []
        exprs.append(f"count({col})")
        if cands:
            marks = ", ".join("?" for _ in cands)
            exprs.append(f"histogram({col}) FILTER (WHERE {col} IN ({marks}))")
            params.extend(cands)
        else:
            exprs.append("NULL")
    row = session.rows(
        f"SELECT {', '.join(exprs)} FROM data", params, context="diff: reading the data"
    )[0]
    values: dict[str, int] = {}
    hist: dict[str, dict[Any, int]] = {}
    mean: dict[str, float | None] = {}
    std: dict[str, float | None] = {}
    i = 1
    for name in numeric:
        values[name] = int(row[i])
        hist[name] = dict(row[i + 1] or {})
        mean[name] = _finite(row[i + 2])
        std[name] = _finite(row[i + 3])
        i += 4
    for name in categorical:
        values[name] = int(row[i])
        hist[name] = dict(row[i + 1] or {})
        i += 2
    return _Counts(int(row[0]), values, hist, mean, std)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _missing(counts: _Counts, name: str) -> float:
    if not counts.row_count:
        return 0.0
    return 1.0 - counts.values[name] / counts.row_count


def _numeric_shift(name: str, edges: list[float], ca: _Counts, cb: _Counts) -> ColumnShift:
    n_a, n_b = ca.values[name], cb.values[name]
    labels = _bin_labels(edges)
    shares_a = [ca.hist[name].get(i, 0) / n_a if n_a else 0.0 for i in range(len(labels))]
    shares_b = [cb.hist[name].get(i, 0) / n_b if n_b else 0.0 for i in range(len(labels))]
    psi: float | None = None
    mean_shift: float | None = None
    if n_a and n_b:
        psi = sum(
            (max(b, PSI_EPSILON) - max(a, PSI_EPSILON))
            * math.log(max(b, PSI_EPSILON) / max(a, PSI_EPSILON))
            for a, b in zip(shares_a, shares_b, strict=True)
        )
        mean_a, mean_b, std_a = ca.mean[name], cb.mean[name], ca.std[name]
        if mean_a is not None and mean_b is not None and std_a:
            mean_shift = (mean_b - mean_a) / std_a
    return ColumnShift(
        name=name,
        kind="numeric",
        missing_ratio_a=_missing(ca, name),
        missing_ratio_b=_missing(cb, name),
        psi=psi,
        mean_shift_std=mean_shift,
        shifted=psi is not None and psi > PSI_THRESHOLD,
        buckets=[
            Bucket(label=lb, share_a=a, share_b=b)
            for lb, a, b in zip(labels, shares_a, shares_b, strict=True)
        ],
    )


def _bin_labels(edges: list[float]) -> list[str]:
    bounds = ["-inf", *(f"{e:g}" for e in edges), "+inf"]
    return [f"[{lo}, {hi})" for lo, hi in itertools.pairwise(bounds)]


def _categorical_shift(name: str, cands: list[Any], ca: _Counts, cb: _Counts) -> ColumnShift:
    n_a, n_b = ca.values[name], cb.values[name]
    buckets: list[Bucket] = []
    tvd: float | None = None
    if n_a and n_b:
        for value in cands:
            buckets.append(
                Bucket(
                    label=_label(value),
                    share_a=ca.hist[name].get(value, 0) / n_a,
                    share_b=cb.hist[name].get(value, 0) / n_b,
                )
            )
        rest_a = max(0.0, 1.0 - sum(bk.share_a for bk in buckets))
        rest_b = max(0.0, 1.0 - sum(bk.share_b for bk in buckets))
        buckets.append(Bucket(label="(other)", share_a=rest_a, share_b=rest_b))
        tvd = 0.5 * sum(abs(bk.share_a - bk.share_b) for bk in buckets)
    return ColumnShift(
        name=name,
        kind="categorical",
        missing_ratio_a=_missing(ca, name),
        missing_ratio_b=_missing(cb, name),
        tvd=tvd,
        shifted=tvd is not None and tvd > TVD_THRESHOLD,
        buckets=buckets,
    )


def _label(value: JSONScalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
