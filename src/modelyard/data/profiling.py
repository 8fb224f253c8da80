"""Dataset profiling: per-column statistics computed by streaming scans in DuckDB.

A profile never holds the dataset in memory. It takes three scans, each one ``SELECT``
with the aggregates of every column side by side:

1. ranges: the row count and, where DuckDB reads local Parquet itself, every column's
   min/max (there both come from the file footers without touching the data);
2. statistics: counts, mean/std (as sums of values centred on the middle of pass 1's
   range: cheaper than Welford's update, and the centring keeps the variance free of
   catastrophic cancellation; Welford where pass 1 gave no range), min/max
   where pass 1 did not compute them, HyperLogLog distinct estimates, and a uniform
   sample of about :data:`SAMPLE_ROWS` values per column (quantiles and heavy-hitter
   candidates);
3. counts: equal-width histograms of numeric columns between their min and max, exact
   value counts of low-cardinality discrete columns and of the heavy hitters found in the
   sample. (``histogram()`` aggregates run several times slower in the same ``SELECT``
   as sketches and lists, so they get a scan of their own.)

Every aggregate keeps bounded state (sketches, samples of bounded size, exact value counts
only below :data:`EXACT_TOP_VALUES_LIMIT` estimated distinct values), so memory does not
grow with the number of rows. DuckDB's ``reservoir_quantile`` is not used: its parallel
merge keeps one contiguous run of rows (on sorted data every quantile lands in one narrow
range), and ``approx_quantile`` costs more than the rest of a profile together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pydantic import Field

from modelyard.core.schema import Schema
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

# Values per column in the uniform sample behind quantiles and high-cardinality frequent
# values. A sampled quantile's rank error is about 1/sqrt(SAMPLE_ROWS): ±0.3% here.
SAMPLE_ROWS = 100_000

# Discrete columns with at most this many (estimated) distinct values are counted exactly
# (one hash-table entry per value). Above it, a value is reported only when it is a heavy
# hitter: at least HEAVY_HITTER_SHARE of the sampled values.
EXACT_TOP_VALUES_LIMIT = 10_000
HEAVY_HITTER_SHARE = 0.001

# Kinds whose most frequent values are reported. Floats, decimals and timestamps are
# continuous: their histogram and quantiles say more than a list of repeated values.
TOP_VALUE_KINDS: frozenset[str] = frozenset({"string", "boolean", "date", "integer"})

_READ_FAILED = "profiling failed while reading the dataset"
_ORDERED_KINDS = NUMERIC_KINDS | {"string", "date", "time", "timestamp"}
# Discrete kinds whose values are sampled for heavy hitters (integers share the numeric
# sample; booleans are counted exactly in pass 2).
_SAMPLED_DISCRETE = frozenset({"string", "date"})


class TopValue(Schema):
    """A value and the exact number of rows holding it."""

    value: JSONScalar
    count: int


class Histogram(Schema):
    """Equal-width bins: ``counts[i]`` values fall in ``[edges[i], edges[i+1])`` (the last
    bin also includes ``edges[-1]``); ``len(edges) == len(counts) + 1``."""

    edges: list[float]
    counts: list[int]


class ColumnProfile(Schema):
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


class DatasetProfile(Schema):
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
        return session.rows(sql, self.params, context=_READ_FAILED)[0]


@dataclass
class _Column:
    """One column: its SQL aliases, result slots and what the passes found."""

    index: int
    name: str
    arrow_type: str
    kind: ColumnKind
    slot: dict[str, int] = field(default_factory=dict)
    non_null: int = 0
    finite: int = 0
    low: Any = None  # min/max as DuckDB returned them (finite only, for floats)
    high: Any = None
    ranged: bool = False  # low/high came from pass 1
    pivot: float | None = None
    distinct: int | None = None
    mean: float | None = None
    std: float | None = None
    true_count: int = 0
    quantiles: dict[str, float] = field(default_factory=dict)
    hitters: list[Any] = field(default_factory=list)  # frequent in the sample
    hist: dict[int, int] | None = None
    top_counts: dict[Any, int] = field(default_factory=dict)

    @property
    def raw(self) -> str:
        return f"_c{self.index}"

    @property
    def num(self) -> str:
        """The value as DOUBLE for floats (finite values only) and decimals, else raw."""
        return f"_f{self.index}" if self.kind in {"float", "decimal"} else self.raw

    @property
    def values(self) -> int:
        """Values that numeric statistics cover: finite ones for floats, else non-null."""
        return self.finite if self.kind == "float" else self.non_null

    def numeric_range(self) -> tuple[float, float] | None:
        if self.kind not in NUMERIC_KINDS or self.low is None or self.high is None:
            return None
        lo, hi = float(self.low), float(self.high)
        # A decimal(38) near its limits can overflow the width; it gets no histogram.
        if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(hi - lo)):
            return None
        return lo, hi


def profile(
    src: DataSource,
    *,
    bins: int = 20,
    top_k: int = 10,
    progress: ProgressCallback | None = None,
) -> DatasetProfile:
    """Profile every column of ``src`` (see :class:`ColumnProfile` for each statistic).

    ``bins`` (1 to 1000) is the number of equal-width histogram bins between a numeric
    column's min and max (a single bin when they are equal); ``top_k`` (0 to 1000) bounds
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
        say(f"pass 1 of 3: row count and ranges of {len(columns)} columns")
        row_count = _ranges(session, columns)
        if not row_count:
            for col in columns:  # nothing to estimate: say so rather than "unknown"
                col.distinct = 0 if col.kind in _ORDERED_KINDS else None
        else:
            share = min(1.0, SAMPLE_ROWS / row_count)
            say("pass 2 of 3: statistics and samples")
            _statistics(session, columns, share, top_k)
            counts = _Select()
            for col in columns:
                _add_counts(counts, col, bins, top_k)
            if counts.exprs:
                say("pass 3 of 3: histograms and value counts")
                row = counts.run(session, _source(columns, share=1.0))
                for col in columns:
                    if "hist" in col.slot:
                        col.hist = _bins(row[col.slot["hist"]], bins)
                    if "top" in col.slot:
                        col.top_counts = dict(row[col.slot["top"]] or {})
                    if "values" in col.slot:
                        _read_value_counts(col, dict(row[col.slot["values"]] or {}), bins)
        profiles = [_column_profile(col, row_count, bins, top_k) for col in columns]
    return DatasetProfile(row_count=row_count, column_count=len(columns), columns=profiles)


def _source(columns: list[_Column], *, share: float) -> str:
    """A subquery with positional aliases (so aggregates need no quoting) and, for floats
    and decimals, a DOUBLE copy (finite values only) computed once per row rather than
    once per aggregate; with a random number per row when sampling (``share`` < 1)."""
    parts = ["1 AS _one"]  # keeps the SELECT valid for a dataset without columns
    for col in columns:
        q = quote_ident(col.name)
        parts.append(f"{q} AS {col.raw}")
        if col.kind == "float":
            parts.append(f"CASE WHEN isfinite({q}) THEN CAST({q} AS DOUBLE) END AS {col.num}")
        elif col.kind == "decimal":
            parts.append(f"CAST({q} AS DOUBLE) AS {col.num}")
    if share < 1.0:
        parts.append("random() AS _r")
    return f"(SELECT {', '.join(parts)} FROM data)"


def _min_max_exprs(col: _Column, expr: str) -> tuple[str, str]:
    if col.kind == "timestamp":
        # Epoch microseconds, because Python needs pytz to receive TIMESTAMPTZ values.
        return f"epoch_us(min({expr}))", f"epoch_us(max({expr}))"
    return f"min({expr})", f"max({expr})"


def _ranges(session: DuckSession, columns: list[_Column]) -> int:
    """Pass 1: the row count and, when Parquet footers answer them, the min/max of every
    ordered column (raw values: a float range that is not finite because of NaN or
    infinities is computed over finite values in pass 2). Elsewhere min/max would cost a
    scan of their own, so pass 2 computes them instead."""
    sel = _Select()
    rows = sel.add("count(*)")
    slots: dict[int, tuple[int, int]] = {}
    if session.native_parquet:
        for col in columns:
            if col.kind in _ORDERED_KINDS:
                lo, hi = _min_max_exprs(col, col.raw)
                slots[col.index] = (sel.add(lo), sel.add(hi))
    row = sel.run(session, _source(columns, share=1.0))
    for col in columns:
        if col.index in slots:
            lo_slot, hi_slot = slots[col.index]
            col.low, col.high, col.ranged = row[lo_slot], row[hi_slot], True
        rng = col.numeric_range()
        if rng is not None:
            col.pivot = (rng[0] + rng[1]) / 2
        elif col.kind == "float":  # NaN or infinities: pass 2 finds the finite range
            col.low, col.high, col.ranged = None, None, False
    return int(row[rows])


def _histogram_expr(col: _Column, bins: int) -> tuple[str, list[object]] | None:
    rng = col.numeric_range()
    if rng is None or rng[1] <= rng[0]:
        return None
    lo, hi = rng
    # floor((x - lo) * bins / (hi - lo)) is in [0, bins]; bin `bins` (x == hi) is merged
    # into the last one afterwards, cheaper than least() on every row. The bounds are
    # DOUBLE parameters: DECIMAL literals would make this arithmetic several times slower.
    expr = f"histogram(CAST(floor((CAST({col.num} AS DOUBLE) - ?) * ?) AS BIGINT))"
    return expr, [lo, bins / (hi - lo)]


def _statistics(session: DuckSession, columns: list[_Column], share: float, top_k: int) -> None:
    """Pass 2 (see the module docstring).

    Samples are reduced inside DuckDB by an outer ``SELECT`` over the aggregates (sample
    quantiles; the sample's most frequent values with their sample counts) so that only
    a few numbers per column, not the sampled values, are converted to Python objects.
    """
    inner = _Select()
    outer: list[str] = []

    def out(expr: str) -> int:
        outer.append(expr)
        return len(outer) - 1

    def agg(expr: str, *params: object) -> str:
        return f"_a{inner.add(expr, *params)}"

    def sample_of(expr: str) -> str:
        # Nulls are left out so that a sparse column's sample is all values.
        keep = f"{expr} IS NOT NULL" + ("" if share >= 1.0 else f" AND _r < {share!r}::DOUBLE")
        return agg(f"list({expr}) FILTER (WHERE {keep})")

    probs = ", ".join(repr(p) for p in QUANTILES.values())
    for col in columns:
        s = col.slot
        s["count"] = out(agg(f"count({col.raw})"))
        sample: str | None = None
        if col.kind in NUMERIC_KINDS:
            x = f"CAST({col.num} AS DOUBLE)"
            if col.kind == "float":
                s["finite"] = out(agg(f"count({col.num})"))
            if col.pivot is not None:
                s["sum"] = out(agg(f"sum({x} - ?)", col.pivot))
                s["squares"] = out(agg(f"sum(({x} - ?) * ({x} - ?))", col.pivot, col.pivot))
            else:  # no finite range yet: Welford's update, which needs no pivot
                s["min"] = out(agg(f"min({col.num if col.kind == 'float' else col.raw})"))
                s["max"] = out(agg(f"max({col.num if col.kind == 'float' else col.raw})"))
                s["mean"] = out(agg(f"avg({x})"))
                s["std"] = out(agg(f"stddev_samp({x})"))
            distinct = agg(f"approx_count_distinct({col.num})")
            s["distinct"] = out(distinct)
            # Integers are sampled as they are: the same list gives quantiles and
            # frequent values.
            sample = sample_of(col.num)
            s["quantiles"] = out(f"list_aggregate({sample}, 'quantile_cont', [{probs}])")
        elif col.kind == "boolean":
            s["true"] = out(agg(f"count_if({col.raw})"))
        elif col.kind in _ORDERED_KINDS:
            if not col.ranged:
                lo, hi = _min_max_exprs(col, col.raw)
                s["min"], s["max"] = out(agg(lo)), out(agg(hi))
            distinct = agg(f"approx_count_distinct({col.raw})")
            s["distinct"] = out(distinct)
            if col.kind in _SAMPLED_DISCRETE and top_k:
                sample = sample_of(col.raw)
        if top_k and col.kind in TOP_VALUE_KINDS and col.kind != "boolean":
            assert sample is not None
            # Only high-cardinality columns need heavy hitters (the others are counted
            # exactly in pass 3), and list_histogram() of a large sample is not cheap.
            s["hitters"] = out(
                f"CASE WHEN {distinct} > {EXACT_TOP_VALUES_LIMIT} THEN "
                f"list_slice(list_reverse_sort(list_transform(list_filter("
                f"map_entries(list_histogram({sample})), lambda e: e.value >= greatest(2, "
                f"len({sample}) * {HEAVY_HITTER_SHARE!r})), "
                f"lambda e: struct_pack(n := e.value, v := e.key))), 1, {top_k}) END"
            )
    aliased = ", ".join(f"{e} AS _a{i}" for i, e in enumerate(inner.exprs))
    sql = f"SELECT {', '.join(outer)} FROM (SELECT {aliased} FROM {_source(columns, share=share)})"
    row = session.rows(sql, inner.params, context=_READ_FAILED)[0]
    for col in columns:
        _read_statistics(col, row)


def _read_statistics(col: _Column, row: tuple[Any, ...]) -> None:
    s = col.slot
    col.non_null = int(row[s["count"]])
    col.finite = int(row[s["finite"]]) if "finite" in s else col.non_null
    if "distinct" in s:
        col.distinct = int(row[s["distinct"]] or 0)
    if "true" in s:
        col.true_count = int(row[s["true"]] or 0)
    if "quantiles" in s and row[s["quantiles"]] is not None:
        values = [float(v) for v in row[s["quantiles"]]]
        col.quantiles = dict(zip(QUANTILES, values, strict=True))
    if "hitters" in s:
        col.hitters = [e["v"] for e in (row[s["hitters"]] or []) if e["v"] is not None]
    if col.kind not in NUMERIC_KINDS:
        if "min" in s and not col.ranged:
            col.low, col.high = row[s["min"]], row[s["max"]]
        return
    if not col.values:
        return
    if col.pivot is not None:
        n = col.values
        total, squares = float(row[s["sum"]]), float(row[s["squares"]])
        col.mean = col.pivot + total / n
        if n > 1:
            col.std = math.sqrt(max(0.0, (squares - total * total / n) / (n - 1)))
    else:
        col.low, col.high = row[s["min"]], row[s["max"]]
        col.mean = _finite_or_none(row[s["mean"]])
        col.std = _finite_or_none(row[s["std"]])


def _read_value_counts(col: _Column, counts: dict[Any, int], bins: int) -> None:
    """Top values (integers) and the histogram of a numeric column from exact counts of
    each of its values, binned by the same arithmetic as :func:`_histogram_expr`."""
    if col.kind == "integer":
        col.top_counts = counts
    rng = col.numeric_range()
    if rng is None or rng[1] <= rng[0]:
        return
    lo, hi = rng
    scale = bins / (hi - lo)
    by_bin: dict[int, int] = {}
    for value, n in counts.items():
        index = math.floor((float(value) - lo) * scale)
        by_bin[index] = by_bin.get(index, 0) + int(n)
    col.hist = _bins(by_bin, bins)


def _bins(by_bin: dict[int, int] | None, bins: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for index, count in (by_bin or {}).items():
        clamped = min(max(int(index), 0), bins - 1)
        out[clamped] = out.get(clamped, 0) + int(count)
    return out


def _add_counts(sel: _Select, col: _Column, bins: int, top_k: int) -> None:
    """Pass 3 aggregates of one column (none when passes 1-2 answered everything)."""
    low_cardinality = (col.distinct or 0) <= EXACT_TOP_VALUES_LIMIT
    if col.kind in NUMERIC_KINDS and col.values:
        if low_cardinality:
            # Exact counts of each value give the top values and the histogram at once.
            col.slot["values"] = sel.add(f"histogram({col.num})")
            return
        hist = _histogram_expr(col, bins)
        if hist is not None:
            col.slot["hist"] = sel.add(hist[0], *hist[1])
    if not top_k or col.kind not in TOP_VALUE_KINDS or col.kind == "boolean" or not col.non_null:
        return
    if low_cardinality:
        col.slot["top"] = sel.add(f"histogram({col.raw})")
        return
    if col.hitters:
        marks = ", ".join("?" for _ in col.hitters)
        col.slot["top"] = sel.add(
            f"histogram({col.raw}) FILTER (WHERE {col.raw} IN ({marks}))", *col.hitters
        )


def _column_profile(col: _Column, row_count: int, bins: int, top_k: int) -> ColumnProfile:
    missing = row_count - col.non_null
    out = ColumnProfile(
        name=col.name,
        type=col.arrow_type,
        kind=col.kind,
        missing=missing,
        missing_ratio=missing / row_count if row_count else 0.0,
        non_finite=col.non_null - col.finite if col.kind == "float" else 0,
        distinct_estimate=col.distinct,
    )
    if col.kind in _ORDERED_KINDS:
        out.min = _json_value(col.low, col)
        out.max = _json_value(col.high, col)
    if col.kind in NUMERIC_KINDS:
        out.mean, out.std = col.mean, col.std
        out.quantiles = col.quantiles
        out.histogram = _histogram(col, bins)
    elif col.kind == "boolean":
        true, false = col.true_count, col.non_null - col.true_count
        out.distinct_estimate = int(true > 0) + int(false > 0)
        if col.non_null:
            out.min, out.max = false == 0, true > 0
            out.mean = true / col.non_null
        ranked_bools = sorted(((False, false), (True, true)), key=lambda kv: -kv[1])
        out.top_values = [TopValue(value=v, count=n) for v, n in ranked_bools if n][:top_k]
    if col.top_counts:
        present = [(v, n) for v, n in col.top_counts.items() if n]
        ranked = sorted(present, key=lambda kv: (-kv[1], kv[0]))[:top_k]
        out.top_values = [TopValue(value=_json_value(v, col), count=int(n)) for v, n in ranked]
    return out


def _histogram(col: _Column, bins: int) -> Histogram | None:
    rng = col.numeric_range()
    if rng is None or not col.values:
        return None
    lo, hi = rng
    if col.hist is None:  # every value is equal (hi == lo): one bin holds them all
        return Histogram(edges=[lo, hi], counts=[col.values])
    width = (hi - lo) / bins
    edges = [lo + i * width for i in range(bins)] + [hi]
    return Histogram(edges=edges, counts=[col.hist.get(i, 0) for i in range(bins)])


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
