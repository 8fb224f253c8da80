"""Dataset profiling: per-column statistics computed by streaming scans in DuckDB.

A profile never holds the dataset in memory. It takes three scans, each one ``SELECT``
with the aggregates of every column side by side:

1. statistics: counts, min/max, mean/std, HyperLogLog distinct estimates;
2. a uniform (Bernoulli) sample of about :data:`SAMPLE_ROWS` rows: quantiles, and the
   frequent values of high-cardinality columns (skipped as a sample when the dataset is
   no larger: then it is the whole dataset and exact);
3. distributions: equal-width histograms of numeric columns between pass 1's min and
   max, exact value counts of low-cardinality discrete columns, exact counts of the
   frequent values found in pass 2.

Every aggregate keeps bounded state (sketches, a fixed-size sample, exact value counts
only below :data:`EXACT_TOP_VALUES_LIMIT` estimated distinct values), so memory does not
grow with the number of rows. DuckDB's ``reservoir_quantile`` is not used: its parallel
merge keeps one contiguous run of rows (on sorted data every quantile lands in one
narrow range), and ``approx_quantile`` costs more than the rest of a profile together.
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

# Rows in the uniform sample behind quantiles and high-cardinality frequent values. The
# rank error of a sampled quantile is about 1/sqrt(SAMPLE_ROWS): ±0.2% here.
SAMPLE_ROWS = 200_000
SAMPLE_SEED = 20_240_601

# Discrete columns with at most this many (estimated) distinct values are counted exactly
# (one hash-table entry per value). Above it, a value is reported only when it is a heavy
# hitter: at least HEAVY_HITTER_SHARE of the sampled values.
EXACT_TOP_VALUES_LIMIT = 10_000
HEAVY_HITTER_SHARE = 0.001

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
    has no (finite) values or its kind has no order (``other``). ``mean`` of a boolean
    column is the share of true values. ``distinct_estimate`` is a HyperLogLog estimate
    (about ±2%; exact for booleans).

    ``quantiles`` (keys ``p01 p25 p50 p75 p99``, linear interpolation as numpy's default)
    and ``histogram`` exist for numeric kinds only. Quantiles are exact up to
    :data:`SAMPLE_ROWS` rows and computed from a uniform sample above. Histogram counts
    are exact and sum to the number of (finite) non-null values.

    ``top_values`` (most frequent first, ties by value, at most ``top_k``) exist for the
    kinds in :data:`TOP_VALUE_KINDS`, always with exact counts. A column with at most
    :data:`EXACT_TOP_VALUES_LIMIT` distinct values lists its most frequent values; a
    column with more lists only heavy hitters, values holding at least
    :data:`HEAVY_HITTER_SHARE` of the (sampled) values, because "the most frequent" of
    near-unique values (ids, free text) is an arbitrary pick.
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
    """The profile of a dataset version. It carries no timestamp: the same data gives the
    same profile (up to sampling and sketch noise on datasets above SAMPLE_ROWS rows)."""

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

    def run(self, session: DuckSession, source: str) -> tuple[Any, ...]:
        sql = f"SELECT {', '.join(self.exprs)} FROM {source}"
        return session.rows(sql, self.params, context="profiling failed while reading the dataset")[0]


@dataclass
class _Column:
    """One column's SQL aliases, result slots and intermediate findings."""

    index: int
    name: str
    arrow_type: str
    kind: ColumnKind
    stat: dict[str, int] = field(default_factory=dict)  # pass-1 slots
    hist_slot: int | None = None
    top_slot: int | None = None
    quantiles: list[float] | None = None
    top_counts: dict[Any, int] = field(default_factory=dict)

    @property
    def raw(self) -> str:
        return f"_c{self.index}"

    @property
    def num(self) -> str:
        """The value as DOUBLE where the column is numeric (finite values only for floats)."""
        return f"_f{self.index}" if self.kind in {"float", "decimal"} else self.raw


def profile(
    src: DataSource,
    *,
    bins: int = 20,
    top_k: int = 10,
    progress: ProgressCallback | None = None,
) -> DatasetProfile:
    """Profile every column of ``src`` (see :class:`ColumnProfile` for each statistic).

    ``bins`` (1–1000) is the number of equal-width histogram bins between a numeric
    column's min and max (a single bin when they are equal); ``top_k`` (0–1000) bounds
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

        say(f"pass 1 of 3: statistics of {len(columns)} columns")
        first = _Select()
        rows_slot = first.add("count(*)")
        for col in columns:
            _add_statistics(first, col)
        stats = first.run(session, source)
        row_count = int(stats[rows_slot])

        if row_count:
            _sampled_statistics(session, source, columns, stats, row_count, top_k, say)
            dist = _Select()
            for col in columns:
                _add_distribution(dist, col, stats, bins)
            if dist.exprs:
                say("pass 3 of 3: histograms and value counts")
                counted = dist.run(session, source)
                for col in columns:
                    if col.top_slot is not None:
                        col.top_counts = dict(counted[col.top_slot] or {})
            else:
                counted = ()
        else:
            counted = ()
        profiles = [_column_profile(col, stats, counted, row_count, bins, top_k) for col in columns]
    return DatasetProfile(row_count=row_count, column_count=len(columns), columns=profiles)


def _projection(columns: list[_Column]) -> str:
    """A subquery with positional aliases (so aggregates need no quoting) and, for floats
    and decimals, a DOUBLE copy (finite values only) computed once per row rather than
    once per aggregate."""
    parts = ["1 AS _one"]  # keeps the SELECT valid for a dataset without columns
    for col in columns:
        q = quote_ident(col.name)
        parts.append(f"{q} AS {col.raw}")
        if col.kind == "float":
            parts.append(f"CASE WHEN isfinite({q}) THEN CAST({q} AS DOUBLE) END AS {col.num}")
        elif col.kind == "decimal":
            parts.append(f"CAST({q} AS DOUBLE) AS {col.num}")
    return f"(SELECT {', '.join(parts)} FROM data)"


def _sampled_statistics(
    session: DuckSession,
    source: str,
    columns: list[_Column],
    stats: tuple[Any, ...],
    row_count: int,
    top_k: int,
    say: ProgressCallback,
) -> None:
    """Pass 2: quantiles of numeric columns and heavy-hitter candidates of
    high-cardinality discrete columns, from one uniform sample kept as a temporary table
    (DuckDB's buffer manager bounds its memory and spills it past the session limit)."""
    numeric = [c for c in columns if c.kind in NUMERIC_KINDS and stats[c.stat["mean"]] is not None]
    discrete = [
        c
        for c in columns
        if top_k
        and c.kind in TOP_VALUE_KINDS
        and c.kind != "boolean"
        and stats[c.stat["count"]]
        and _high_cardinality(c, stats)
    ]
    if not numeric and not discrete:
        return
    say("pass 2 of 3: quantiles and frequent values from a sample")
    keep = sorted({c.num for c in numeric} | {c.raw for c in discrete})
    sample = ""
    if row_count > SAMPLE_ROWS:
        # A fixed seed makes the sample repeatable where DuckDB's scheduling allows.
        sample = f" USING SAMPLE {100.0 * SAMPLE_ROWS / row_count:.9f}% (bernoulli, {SAMPLE_SEED})"
    context = "profiling failed while sampling the dataset"
    session.rows(f"CREATE TEMP TABLE _sample AS SELECT {', '.join(keep)} FROM {source}{sample}", context=context)
    if numeric:
        probs = ", ".join(repr(p) for p in QUANTILES.values())
        exprs = ", ".join(f"quantile_cont({c.num}, [{probs}])" for c in numeric)
        row = session.rows(f"SELECT {exprs} FROM _sample", context=context)[0]
        for col, qs in zip(numeric, row, strict=True):
            col.quantiles = None if qs is None else [float(v) for v in qs]
    for col in discrete:
        # A GROUP BY per column: DuckDB's hash aggregate is far faster than a histogram()
        # map, and the sample is small.
        seen = session.rows(f"SELECT count({col.raw}) FROM _sample", context=context)[0][0]
        hitters = session.rows(
            f"SELECT {col.raw} FROM _sample WHERE {col.raw} IS NOT NULL GROUP BY 1 "
            f"HAVING count(*) >= ? ORDER BY count(*) DESC LIMIT {top_k}",
            [max(2, math.ceil(HEAVY_HITTER_SHARE * seen))],
            context=context,
        )
        col.top_counts = {v: 0 for (v,) in hitters}
    session.rows("DROP TABLE _sample", context=context)


def _add_statistics(sel: _Select, col: _Column) -> None:
    c, s = col.raw, col.stat
    s["count"] = sel.add(f"count({c})")
    if col.kind in NUMERIC_KINDS:
        x = col.num
        if col.kind == "float":
            s["finite"] = sel.add(f"count({x})")
        # Min/max of integers and decimals on the column itself keeps them exact.
        s["min"] = sel.add(f"min({x if col.kind == 'float' else c})")
        s["max"] = sel.add(f"max({x if col.kind == 'float' else c})")
        s["mean"] = sel.add(f"avg({x})")
        s["std"] = sel.add(f"stddev_samp({x})")
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


def _high_cardinality(col: _Column, stats: tuple[Any, ...]) -> bool:
    return int(stats[col.stat["distinct"]] or 0) > EXACT_TOP_VALUES_LIMIT


def _finite_range(col: _Column, stats: tuple[Any, ...]) -> tuple[float, float] | None:
    if col.kind not in NUMERIC_KINDS:
        return None
    lo, hi = stats[col.stat["min"]], stats[col.stat["max"]]
    if lo is None or hi is None:
        return None
    lo_f, hi_f = float(lo), float(hi)
    # A decimal(38) near its limits can overflow the width computation; such a column
    # simply gets no histogram.
    if not (math.isfinite(lo_f) and math.isfinite(hi_f) and math.isfinite(hi_f - lo_f)):
        return None
    return lo_f, hi_f


def _add_distribution(sel: _Select, col: _Column, stats: tuple[Any, ...], bins: int) -> None:
    rng = _finite_range(col, stats)
    if rng is not None and rng[1] > rng[0]:
        lo, hi = rng
        # floor((x - lo) * bins / (hi - lo)) is in [0, bins]; x == hi joins the last bin.
        # The bounds are DOUBLE parameters: DECIMAL literals would make this arithmetic slow.
        col.hist_slot = sel.add(
            f"histogram(least(CAST(floor((CAST({col.num} AS DOUBLE) - ?) * ?) AS BIGINT), {bins - 1}))",
            lo,
            bins / (hi - lo),
        )
    if col.kind not in TOP_VALUE_KINDS or col.kind == "boolean" or "distinct" not in col.stat:
        return  # booleans were counted exactly in pass 1
    if not stats[col.stat["count"]]:
        return
    if not _high_cardinality(col, stats):
        col.top_slot = sel.add(f"histogram({col.raw})")
    elif col.top_counts:
        marks = ", ".join("?" for _ in col.top_counts)
        col.top_slot = sel.add(
            f"histogram({col.raw}) FILTER (WHERE {col.raw} IN ({marks}))", *col.top_counts
        )


def _column_profile(
    col: _Column,
    stats: tuple[Any, ...],
    counted: tuple[Any, ...],
    row_count: int,
    bins: int,
    top_k: int,
) -> ColumnProfile:
    s = col.stat
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
        if col.quantiles is not None:
            out.quantiles = dict(zip(QUANTILES, col.quantiles, strict=True))
        out.histogram = _histogram(col, stats, counted, bins)
    elif col.kind == "boolean":
        true = int(stats[s["true"]] or 0)
        false = non_null - true
        out.distinct_estimate = int(true > 0) + int(false > 0)
        if non_null:
            out.min, out.max = false == 0, true > 0
            out.mean = true / non_null
        counted_bools = [(False, false), (True, true)]
        ranked_bools = sorted((kv for kv in counted_bools if kv[1]), key=lambda kv: -kv[1])
        out.top_values = [TopValue(value=v, count=n) for v, n in ranked_bools[:top_k]]
    if col.top_counts and col.kind != "boolean":
        present = [(v, n) for v, n in col.top_counts.items() if n]
        ranked = sorted(present, key=lambda kv: (-kv[1], kv[0]))[:top_k]
        out.top_values = [TopValue(value=_json_value(v, col), count=int(n)) for v, n in ranked]
    return out


def _histogram(
    col: _Column, stats: tuple[Any, ...], counted: tuple[Any, ...], bins: int
) -> Histogram | None:
    rng = _finite_range(col, stats)
    if rng is None:
        return None
    lo, hi = rng
    if col.hist_slot is None:  # every finite value is equal: one bin holds them all
        slot = col.stat["finite"] if col.kind == "float" else col.stat["count"]
        return Histogram(edges=[lo, hi], counts=[int(stats[slot])])
    by_bin: dict[int, int] = counted[col.hist_slot] or {}
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
