"""Dataset profiling: per-column statistics computed by streaming scans in DuckDB.

A profile never holds the dataset in memory. It takes at most three scans, each one
``SELECT`` with the aggregates of every column side by side:

1. counts, min/max, mean/std, sampled quantiles and HyperLogLog distinct estimates;
2. equal-width histograms of numeric columns (using pass 1's min/max), exact value counts
   of low-cardinality discrete columns, and heavy-hitter candidates (``approx_top_k``) of
   high-cardinality ones;
3. only when pass 2 found candidates: their exact counts.

Every aggregate keeps bounded state (HyperLogLog sketches, fixed-size reservoirs, exact
value counts only below :data:`EXACT_TOP_VALUES_LIMIT` estimated distinct values), so
memory does not grow with the number of rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from modelyard.data.formats import (
    NUMERIC_KINDS,
    ColumnKind,
    DataSource,
    DuckSession,
    duckdb_session,
    quote_ident,
)
from modelyard.errors import InvalidInput

JSONScalar = str | int | float | bool | None
"""A value as it appears in a profile: numbers, ISO-8601 strings for temporals, text."""

ProgressCallback = Callable[[str], None]
"""Receives one short human-readable line before each scan of a long computation."""

QUANTILES: dict[str, float] = {"p01": 0.01, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p99": 0.99}

# Rows kept by each column's quantile reservoir. Below this many values quantiles are
# exact; above, the rank error of a quantile is about 1/sqrt(sample), i.e. ±0.8% here.
QUANTILE_SAMPLE = 16_384

# Discrete columns with at most this many (estimated) distinct values are counted exactly
# (one hash-table entry per value); above it, heavy hitters come from a bounded sketch.
EXACT_TOP_VALUES_LIMIT = 10_000

# Kinds whose most frequent values are reported. Floats, decimals and timestamps are
# continuous: their histogram and quantiles say more than a list of repeated values.
TOP_VALUE_KINDS: frozenset[str] = frozenset({"string", "boolean", "date", "integer"})


class TopValue(BaseModel):
    """A value and the exact number of rows holding it."""

    value: JSONScalar
    count: int


class Histogram(BaseModel):
    """Equal-width bins: ``counts[i]`` values fall in ``[edges[i], edges[i+1])`` (the last
    bin also includes ``edges[-1]``); ``len(edges) == len(counts) + 1``."""

    edges: list[float]
    counts: list[int]


class ColumnProfile(BaseModel):
    """Statistics of one column. Every statistic ignores nulls.

    ``missing`` counts nulls. For float columns NaN and ±infinity are not missing: they are
    counted in ``non_finite`` and left out of min/max/mean/std/quantiles/histogram (none
    of which has a JSON representation of them). ``min``/``max`` are numbers for numeric
    and boolean columns, ISO-8601 strings for dates, times and timestamps (UTC with an
    offset when the column has a time zone) and text for strings; None when the column
    has no (finite) values or the kind has no order (``other``). ``mean`` of a boolean
    column is the share of true values. ``distinct_estimate`` is a HyperLogLog estimate
    (exact for booleans). ``quantiles`` (keys ``p01 p25 p50 p75 p99``) and ``histogram``
    exist for numeric kinds only; quantiles are exact up to :data:`QUANTILE_SAMPLE`
    values and estimated from a uniform sample above. ``top_values`` (most frequent first,
    ties by value) exist for the kinds in :data:`TOP_VALUE_KINDS`, with exact counts;
    for columns with more than :data:`EXACT_TOP_VALUES_LIMIT` distinct values the *set*
    of values comes from a heavy-hitter sketch, which finds every value frequent enough
    to matter but may pick arbitrarily among near-unique ones.
    """

    name: str
    type: str
    kind: ColumnKind
    missing: int
    missing_ratio: float
    non_finite: int = 0
    distinct_estimate: int | None = None
    min: JSONScalar = None
    max: JSONScalar = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] = Field(default_factory=dict)
    top_values: list[TopValue] = Field(default_factory=list)
    histogram: Histogram | None = None


class DatasetProfile(BaseModel):
    """The profile of a dataset version; deterministic apart from sampled quantiles and
    sketch estimates on large data (no timestamp, so equal data gives equal profiles)."""

    row_count: int
    column_count: int
    columns: list[ColumnProfile]


@dataclass
class _Select:
    """Aggregate expressions of one scan, addressed by the index ``add`` returns."""

    exprs: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)

    def add(self, expr: str, *params: object) -> int:
        self.exprs.append(expr)
        self.params.extend(params)
        return len(self.exprs) - 1

    def run(self, session: DuckSession, source: str, context: str) -> tuple[Any, ...]:
        sql = f"SELECT {', '.join(self.exprs)} FROM {source}"
        return session.rows(sql, self.params, context=context)[0]


@dataclass
class _Column:
    index: int
    name: str
    arrow_type: str
    kind: ColumnKind
    slots: dict[str, int] = field(default_factory=dict)
    hist_slot: int | None = None
    top_slot: int | None = None
    top_is_exact: bool = False
    top_counts: dict[Any, int] | None = None


def profile(
    src: DataSource,
    *,
    bins: int = 20,
    top_k: int = 10,
    progress: ProgressCallback | None = None,
) -> DatasetProfile:
    """Profile every column of ``src`` (see :class:`ColumnProfile` for each statistic).

    ``bins`` (1–1000) is the number of equal-width histogram bins between a numeric
    column's min and max (one bin when they are equal); ``top_k`` (0–1000) bounds
    ``top_values``. ``progress`` receives a short line before each scan.
    Raises InvalidInput for unreadable data or out-of-range arguments.
    """
    if not 1 <= bins <= 1000:
        raise InvalidInput(f"bins must be between 1 and 1000; got {bins}")
    if not 0 <= top_k <= 1000:
        raise InvalidInput(f"top_k must be between 0 and 1000; got {top_k}")
    say = progress or (lambda _msg: None)
    with duckdb_session(src, trusted_sql_only=True) as session:
        columns = [
            _Column(i, f.name, str(f.type), session.kind(f.name))
            for i, f in enumerate(session.schema)
        ]
        source = _projection(columns)
        say(f"profiling: pass 1 (statistics of {len(columns)} columns)")
        first = _Select()
        rows_slot = first.add("count(*)")
        for col in columns:
            _add_statistics(first, col)
        stats = first.run(session, source, "profiling failed while reading the dataset")
        row_count = int(stats[rows_slot])

        second = _Select()
        for col in columns:
            _add_distribution(second, col, stats, bins, top_k)
        dist: tuple[Any, ...] = ()
        if second.exprs and row_count:
            say("profiling: pass 2 (histograms and frequent values)")
            dist = second.run(session, source, "profiling failed while reading the dataset")
            for col in columns:
                if col.top_slot is not None and col.top_is_exact:
                    col.top_counts = dist[col.top_slot] or {}
            third = _Select()
            for col in columns:
                _add_candidate_counts(third, col, dist)
            if third.exprs:
                say("profiling: pass 3 (counts of frequent values)")
                counts = third.run(session, source, "profiling failed while reading the dataset")
                for col in columns:
                    if col.top_slot is not None and not col.top_is_exact:
                        col.top_counts = counts[col.top_slot] or {}

        profiles = [_column_profile(col, stats, dist, row_count, bins, top_k) for col in columns]
    return DatasetProfile(row_count=row_count, column_count=len(columns), columns=profiles)


def _c(col: _Column) -> str:
    return f"_c{col.index}"


def _f(col: _Column) -> str:
    return f"_f{col.index}"


def _projection(columns: list[_Column]) -> str:
    """A subquery with positional aliases (no quoting concerns in aggregates) and, for
    floats, a finite-only copy computed once per row rather than once per aggregate."""
    parts = ["1 AS _one"]  # keeps the SELECT valid for a dataset without columns
    for col in columns:
        q = quote_ident(col.name)
        parts.append(f"{q} AS {_c(col)}")
        if col.kind == "float":
            parts.append(f"CASE WHEN isfinite({q}) THEN {q} END AS {_f(col)}")
        elif col.kind == "decimal":
            parts.append(f"CAST({q} AS DOUBLE) AS {_f(col)}")
    return f"(SELECT {', '.join(parts)} FROM data)"


def _numeric_expr(col: _Column) -> str:
    return _f(col) if col.kind in {"float", "decimal"} else _c(col)


def _add_statistics(sel: _Select, col: _Column) -> None:
    c, s = _c(col), col.slots
    s["count"] = sel.add(f"count({c})")
    if col.kind in NUMERIC_KINDS:
        x = _numeric_expr(col)
        if col.kind == "float":
            s["finite"] = sel.add(f"count({x})")
        # Min/max of the column itself (not the DOUBLE copy) keeps integers exact and
        # lets the Parquet reader answer from footer statistics.
        s["min"] = sel.add(f"min({x if col.kind == 'float' else c})")
        s["max"] = sel.add(f"max({x if col.kind == 'float' else c})")
        s["mean"] = sel.add(f"avg({x})")
        s["std"] = sel.add(f"stddev_samp({x})")
        probs = ", ".join(repr(p) for p in QUANTILES.values())
        s["quantiles"] = sel.add(f"reservoir_quantile({x}, [{probs}], {QUANTILE_SAMPLE})")
        s["distinct"] = sel.add(f"approx_count_distinct({x})")
    elif col.kind == "boolean":
        s["true"] = sel.add(f"count_if({c})")
    elif col.kind == "timestamp":
        # Epoch microseconds, because Python needs pytz to receive TIMESTAMPTZ values.
        s["min"] = sel.add(f"epoch_us(min({c}))")
        s["max"] = sel.add(f"epoch_us(max({c}))")
        s["distinct"] = sel.add(f"approx_count_distinct({c})")
    elif col.kind in {"string", "date", "time"}:
        s["min"] = sel.add(f"min({c})")
        s["max"] = sel.add(f"max({c})")
        s["distinct"] = sel.add(f"approx_count_distinct({c})")


def _finite_range(col: _Column, stats: tuple[Any, ...]) -> tuple[float, float] | None:
    if "min" not in col.slots or col.kind not in NUMERIC_KINDS:
        return None
    lo, hi = stats[col.slots["min"]], stats[col.slots["max"]]
    if lo is None or hi is None:
        return None
    lo_f, hi_f = float(lo), float(hi)
    # Integers beyond 2**1023 do not exist, but a decimal(38) near its limit can overflow
    # the width computation; such a column simply gets no histogram.
    if not (math.isfinite(lo_f) and math.isfinite(hi_f) and math.isfinite(hi_f - lo_f)):
        return None
    return lo_f, hi_f


def _add_distribution(
    sel: _Select, col: _Column, stats: tuple[Any, ...], bins: int, top_k: int
) -> None:
    rng = _finite_range(col, stats)
    if rng is not None and rng[1] > rng[0]:
        lo, hi = rng
        x = f"CAST({_numeric_expr(col)} AS DOUBLE)"
        # floor((x - lo) * bins / (hi - lo)) is in [0, bins]; x == hi lands in the last bin.
        col.hist_slot = sel.add(
            f"histogram(least(CAST(floor(({x} - ?) * ?) AS BIGINT), {bins - 1}))",
            lo,
            bins / (hi - lo),
        )
    if top_k == 0 or col.kind not in TOP_VALUE_KINDS or col.kind == "boolean":
        return  # booleans are counted exactly in pass 1
    if not stats[col.slots["count"]]:
        return
    distinct = stats[col.slots["distinct"]] or 0
    if distinct <= EXACT_TOP_VALUES_LIMIT:
        col.top_slot = sel.add(f"histogram({_c(col)})")
        col.top_is_exact = True
    else:
        # Ask the sketch for extra candidates: its ranking is approximate, the exact
        # counts of pass 3 then pick the real top_k among them.
        col.top_slot = sel.add(f"approx_top_k({_c(col)}, {max(2 * top_k, top_k + 10)})")


def _add_candidate_counts(sel: _Select, col: _Column, dist: tuple[Any, ...]) -> None:
    if col.top_slot is None or col.top_is_exact:
        return
    candidates = [v for v in (dist[col.top_slot] or []) if v is not None]
    if not candidates:
        col.top_slot = None
        return
    marks = ", ".join("?" for _ in candidates)
    col.top_slot = sel.add(
        f"histogram({_c(col)}) FILTER (WHERE {_c(col)} IN ({marks}))", *candidates
    )


def _column_profile(
    col: _Column,
    stats: tuple[Any, ...],
    dist: tuple[Any, ...],
    row_count: int,
    bins: int,
    top_k: int,
) -> ColumnProfile:
    s = col.slots
    non_null = int(stats[s["count"]])
    missing = row_count - non_null
    out = ColumnProfile(
        name=col.name,
        type=col.arrow_type,
        kind=col.kind,
        missing=missing,
        missing_ratio=missing / row_count if row_count else 0.0,
    )
    if col.kind == "float":
        out.non_finite = non_null - int(stats[s["finite"]])
    if "distinct" in s:
        out.distinct_estimate = int(stats[s["distinct"]] or 0)
    if "min" in s:
        out.min = _json_value(stats[s["min"]], col)
        out.max = _json_value(stats[s["max"]], col)
    if col.kind in NUMERIC_KINDS:
        out.mean = _finite_or_none(stats[s["mean"]])
        out.std = _finite_or_none(stats[s["std"]])
        qs = stats[s["quantiles"]]
        if qs is not None:
            out.quantiles = {k: float(v) for k, v in zip(QUANTILES, qs, strict=True)}
        out.histogram = _histogram(col, stats, dist, bins)
    elif col.kind == "boolean":
        true = int(stats[s["true"]] or 0)
        false = non_null - true
        out.distinct_estimate = int(true > 0) + int(false > 0)
        if non_null:
            out.min, out.max = false == 0, true > 0
            out.mean = true / non_null
        counted = [TopValue(value=v, count=n) for v, n in ((True, true), (False, false)) if n]
        out.top_values = sorted(counted, key=lambda t: (-t.count, t.value is True))[:top_k]
    if col.top_counts:
        ranked = sorted(col.top_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        out.top_values = [TopValue(value=_json_value(v, col), count=int(n)) for v, n in ranked]
    return out


def _histogram(
    col: _Column, stats: tuple[Any, ...], dist: tuple[Any, ...], bins: int
) -> Histogram | None:
    rng = _finite_range(col, stats)
    if rng is None:
        return None
    lo, hi = rng
    if col.hist_slot is None:  # every finite value is equal: one bin holds them all
        values = int(stats[col.slots["finite"]] if col.kind == "float" else stats[col.slots["count"]])
        return Histogram(edges=[lo, hi], counts=[values])
    by_bin: dict[int, int] = dist[col.hist_slot] or {}
    width = (hi - lo) / bins
    edges = [lo + i * width for i in range(bins)] + [hi]
    return Histogram(edges=edges, counts=[int(by_bin.get(i, 0)) for i in range(bins)])


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


_EPOCH = datetime(1970, 1, 1)


def _json_value(value: Any, col: _Column) -> JSONScalar:
    """Render a DuckDB result value the way profiles store it (see ColumnProfile)."""
    if value is None:
        return None
    if col.kind == "timestamp":
        try:
            moment = _EPOCH + timedelta(microseconds=int(value))
        except OverflowError:  # beyond Python's year 9999
            return None
        if "tz=" in col.arrow_type:
            return moment.replace(tzinfo=UTC).isoformat()
        return moment.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str):
        return value
    return str(value)
