"""Metric points: batched insert with per-key summaries, and histories downsampled in SQL.

Ingestion takes a batch as parallel columns (key index, value, step, timestamp), inserts
every point with one ``executemany`` of one driver-level ``INSERT`` (no per-row ORM or
Core parameter processing), and folds the batch into ``tracking_metric_summaries`` with
one ``INSERT … ON CONFLICT DO UPDATE`` row per key: the summary is updated in the same
transaction as the points, so search never sees points without their summary.

Downsampling (M4): the x axis (step; timestamp when every point has the same step) is
cut into ``max_points // 4`` buckets of equal width, and each bucket keeps its first and
last point and the points holding its minimum and maximum value. A line drawn through
the result has the same envelope as one drawn through every point, and the series' first
and last points and global min and max are always kept. The database does the bucketing
and aggregation, so a history of millions of points never crosses into Python.

Tiles: a long history (``TILE_MIN_POINTS`` and more) is answered from
``tracking_metric_tiles`` instead: each batch is folded (with numpy) into M4 summaries of
fixed step ranges of 2^8, 2^12 and 2^16 steps, merged by one upsert per batch. A read
uses the coarsest tile width that fits in the bucket width, snaps the buckets to whole
tiles (first bucket starts at a multiple of the tile width, width a multiple of it), and
combines tiles per bucket: the result is exact M4 for those buckets, read from about
``span / tile width`` rows. Points equal in step, timestamp and value are one point there
(the raw path would keep both; a chart cannot tell them apart). Histories on the
timestamp axis, and ones whose tiles do not hold every point (logged before tiles
existed), are read from the points.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Table, bindparam, case, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from modelyard.tracking.schemas import Point
from modelyard.tracking.store import MetricRow, MetricSummaryRow, MetricTileRow

_METRICS: Table = MetricRow.__table__  # type: ignore[assignment]
_SUMMARIES: Table = MetricSummaryRow.__table__  # type: ignore[assignment]
_TILES: Table = MetricTileRow.__table__  # type: ignore[assignment]

TILE_LEVELS = (16, 12, 8)  # log2 of the tile widths, coarsest first
TILE_MIN_POINTS = 100_000  # shorter histories are downsampled from the points


def _placeholders(session: Session, n: int) -> str:
    style = session.get_bind().dialect.paramstyle
    mark = "?" if style == "qmark" else "%s"
    return ", ".join([mark] * n)


def insert_points(
    session: Session,
    run_id: str,
    keys: Sequence[str],
    key_index: Sequence[int],
    values: Sequence[float],
    steps: Sequence[int],
    timestamps: Sequence[int],
) -> None:
    """Insert one batch (already validated) and fold it into the per-key summaries.

    NaN is stored as NULL. The caller holds the run's row lock, so no other batch of the
    same run changes its summaries concurrently.
    """
    if not key_index:
        return
    conn = session.connection()
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c) for c in ("run_id", "key", "value", "step", "timestamp"))
    stored = [None if v != v else v for v in values]
    conn.exec_driver_sql(
        f"INSERT INTO {quote(_METRICS.name)} ({columns}) VALUES ({_placeholders(session, 5)})",
        list(
            zip(
                [run_id] * len(key_index),
                [keys[i] for i in key_index],
                stored,
                steps,
                timestamps,
                strict=True,
            )
        ),
    )
    merge_summaries(session, run_id, keys, key_index, stored, steps, timestamps)
    merge_tiles(session, run_id, keys, key_index, values, steps, timestamps)


def merge_summaries(
    session: Session,
    run_id: str,
    keys: Sequence[str],
    key_index: Sequence[int],
    values: Sequence[float | None],
    steps: Sequence[int],
    timestamps: Sequence[int],
) -> None:
    """Fold points already inserted (NaN as None) into the per-key summaries."""
    if key_index:
        _upsert_summaries(session, run_id, keys, _fold(key_index, values, steps, timestamps))


def _fold(
    key_index: Sequence[int],
    values: Sequence[float | None],
    steps: Sequence[int],
    timestamps: Sequence[int],
) -> dict[int, dict[str, Any]]:
    """Per key: the latest point (highest step, then timestamp, then later in the batch),
    min and max over non-NaN values, and the count."""
    positions: dict[int, list[int]] = defaultdict(list)
    for i, k in enumerate(key_index):
        positions[k].append(i)
    out: dict[int, dict[str, Any]] = {}
    for k, where in positions.items():
        step, timestamp, last = max(
            zip(
                map(steps.__getitem__, where),
                map(timestamps.__getitem__, where),
                where,
                strict=True,
            )
        )
        finite = [v for v in map(values.__getitem__, where) if v is not None]
        out[k] = {
            "latest": values[last],
            "step": step,
            "timestamp": timestamp,
            "min": min(finite) if finite else None,
            "max": max(finite) if finite else None,
            "count": len(where),
        }
    return out


def _upsert_summaries(
    session: Session, run_id: str, keys: Sequence[str], folded: dict[int, dict[str, Any]]
) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_SUMMARIES)
    new = stmt.excluded
    old = _SUMMARIES.c
    newer = (new.step > old.step) | ((new.step == old.step) & (new.timestamp >= old.timestamp))

    def pick(column: str) -> Any:
        return case((newer, new[column]), else_=old[column])

    def extreme(column: str, smaller: bool) -> Any:
        better = new[column] < old[column] if smaller else new[column] > old[column]
        return case(
            (old[column].is_(None), new[column]),
            (new[column].is_(None), old[column]),
            (better, new[column]),
            else_=old[column],
        )

    stmt = stmt.on_conflict_do_update(
        index_elements=[old.run_id, old.key],
        set_={
            "latest": pick("latest"),
            "step": pick("step"),
            "timestamp": pick("timestamp"),
            "min": extreme("min", True),
            "max": extreme("max", False),
            "count": old.count + new["count"],
        },
    )
    session.execute(stmt, [{"run_id": run_id, "key": keys[k], **s} for k, s in folded.items()])


# --- tiles --------------------------------------------------------------------------------


def merge_tiles(
    session: Session,
    run_id: str,
    keys: Sequence[str],
    key_index: Sequence[int],
    values: Sequence[float],
    steps: Sequence[int],
    timestamps: Sequence[int],
) -> None:
    """Fold a batch already inserted (NaN as NaN) into its (run, key) tiles at every
    level, with one upsert.

    Within the batch, points are ordered by (step, timestamp, position in the batch), as
    the raw history orders them by (step, timestamp, id); a stored tile was written by an
    earlier batch, so on a tie it keeps its first, minimum and maximum and yields its last.
    """
    if not key_index:
        return
    k = np.asarray(key_index, dtype=np.int64)
    s = np.asarray(steps, dtype=np.int64)
    t = np.asarray(timestamps, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    order = np.lexsort((np.arange(len(k)), t, s, k))  # tiles are monotone in the step
    k, s, t, v = k[order], s[order], t[order], v[order]
    nan = np.isnan(v)
    rows: list[dict[str, Any]] = []
    for level in TILE_LEVELS:
        tile = s >> level
        cut = np.flatnonzero((k[1:] != k[:-1]) | (tile[1:] != tile[:-1])) + 1
        starts = np.concatenate(([0], cut))
        ends = np.concatenate((cut, [len(k)])) - 1
        lo = np.minimum.reduceat(np.where(nan, np.inf, v), starts)
        hi = np.maximum.reduceat(np.where(nan, -np.inf, v), starts)
        some = np.add.reduceat(~nan, starts) > 0
        lo_at = _first_holding(v == np.repeat(lo, ends - starts + 1), starts, ends)
        hi_at = _first_holding(v == np.repeat(hi, ends - starts + 1), starts, ends)
        for g, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            real = bool(some[g])
            i, j = int(lo_at[g]), int(hi_at[g])
            rows.append(
                {
                    "run_id": run_id,
                    "key": keys[int(k[a])],
                    "level": level,
                    "tile": int(tile[a]),
                    "count": b - a + 1,
                    "first_step": int(s[a]),
                    "first_ts": int(t[a]),
                    "first_value": None if nan[a] else float(v[a]),
                    "last_step": int(s[b]),
                    "last_ts": int(t[b]),
                    "last_value": None if nan[b] else float(v[b]),
                    "lo": float(lo[g]) if real else None,
                    "lo_step": int(s[i]) if real else None,
                    "lo_ts": int(t[i]) if real else None,
                    "hi": float(hi[g]) if real else None,
                    "hi_step": int(s[j]) if real else None,
                    "hi_ts": int(t[j]) if real else None,
                }
            )
    dialect = session.get_bind().dialect.name
    if dialect not in _TILE_UPSERT:
        _TILE_UPSERT[dialect] = _tile_upsert(dialect)
    session.execute(_TILE_UPSERT[dialect], rows)


def _first_holding(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per group, the first index in the group where ``mask`` holds (``ends`` if none)."""
    where = np.flatnonzero(mask)
    at = np.searchsorted(where, starts)
    found = np.concatenate((where, [-1]))[at]
    return np.where((found >= starts) & (found <= ends), found, ends)


_TILE_UPSERT: dict[str, Any] = {}  # dialect name -> statement (built once)


def _tile_upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_TILES)
    new = stmt.excluded
    old = _TILES.c
    earlier = (new.first_step < old.first_step) | (
        (new.first_step == old.first_step) & (new.first_ts < old.first_ts)
    )
    later = (new.last_step > old.last_step) | (
        (new.last_step == old.last_step) & (new.last_ts >= old.last_ts)
    )

    def beats(v: str, at_step: str, at_ts: str, smaller: bool) -> Any:
        better = new[v] < old[v] if smaller else new[v] > old[v]
        first = (new[at_step] < old[at_step]) | (
            (new[at_step] == old[at_step]) & (new[at_ts] < old[at_ts])
        )
        return old[v].is_(None) | (new[v].is_not(None) & (better | ((new[v] == old[v]) & first)))

    take_lo = beats("lo", "lo_step", "lo_ts", True)
    take_hi = beats("hi", "hi_step", "hi_ts", False)

    def pick(cond: Any, column: str) -> Any:
        return case((cond, new[column]), else_=old[column])

    return stmt.on_conflict_do_update(
        index_elements=[old.run_id, old.key, old.level, old.tile],
        set_={
            "count": old.count + new["count"],
            **{c: pick(earlier, c) for c in ("first_step", "first_ts", "first_value")},
            **{c: pick(later, c) for c in ("last_step", "last_ts", "last_value")},
            **{c: pick(take_lo, c) for c in ("lo", "lo_step", "lo_ts")},
            **{c: pick(take_hi, c) for c in ("hi", "hi_step", "hi_ts")},
        },
    )


def tile_buckets(lo_step: int, hi_step: int, max_points: int) -> tuple[int, int, int] | None:
    """(level, x0, width) of the tile-aligned buckets for a step range, or None when the
    buckets are narrower than the finest tile.

    The width M4 would use (the span over ``max_points // 4`` buckets, rounded up) picks
    the coarsest tile width not above it; the buckets then start at a multiple of that
    tile width and their width is rounded up to one, so there are never more buckets
    than asked for.
    """
    buckets = max(1, max_points // 4)
    wanted = max(1, -(-(hi_step - lo_step + 1) // buckets))
    for level in TILE_LEVELS:
        tile = 1 << level
        if tile <= wanted:
            return level, (lo_step >> level) << level, -(-wanted // tile) * tile
    return None


def _from_tiles(
    session: Session, run_id: str, key: str, total: int, max_points: int
) -> list[Point] | None:
    """M4 over tile-aligned buckets, read from the tiles; None when the tiles cannot answer
    (they miss points, the history is on the timestamp axis, or buckets are too narrow).

    The step range comes from the coarsest tiles, so no point is read at all. Counts only
    grow, so tile counts equal to the summary's count mean the tiles hold every point.
    """
    c = _TILES.c
    lo_step, hi_step, count = session.execute(
        select(func.min(c.first_step), func.max(c.last_step), func.sum(c.count)).where(
            c.run_id == run_id, c.key == key, c.level == TILE_LEVELS[0]
        )
    ).one()
    if lo_step is None or count != total or lo_step == hi_step:
        return None
    plan = tile_buckets(lo_step, hi_step, max_points)
    if plan is None:
        return None
    level, x0, width = plan
    rows = session.execute(
        select(
            c.tile,
            c.count.label("n"),
            c.first_step,
            c.first_ts,
            c.first_value,
            c.last_step,
            c.last_ts,
            c.last_value,
            c.lo,
            c.lo_step,
            c.lo_ts,
            c.hi,
            c.hi_step,
            c.hi_ts,
        )
        .where(c.run_id == run_id, c.key == key, c.level == level)
        .order_by(c.tile)
    ).all()
    if sum(r.n for r in rows) != total:  # points from before tiles, or a racing batch
        return None
    kept: set[tuple[int, int, float | None]] = set()
    bucket: int | None = None
    lo: tuple[Any, ...] | None = None
    hi: tuple[Any, ...] | None = None
    last: tuple[int, int, float | None] | None = None
    for r in rows:
        b = ((r.tile << level) - x0) // width
        if b != bucket:
            kept.update(p for p in (last, lo and lo[1:], hi and hi[1:]) if p is not None)
            bucket, lo, hi = b, None, None
            kept.add((r.first_step, r.first_ts, r.first_value))
        last = (r.last_step, r.last_ts, r.last_value)
        if r.lo is not None and (lo is None or (r.lo, r.lo_step, r.lo_ts) < lo[:3]):
            lo = (r.lo, r.lo_step, r.lo_ts, r.lo)
        if r.hi is not None and (hi is None or (-r.hi, r.hi_step, r.hi_ts) < hi[:3]):
            hi = (-r.hi, r.hi_step, r.hi_ts, r.hi)
    kept.update(p for p in (last, lo and lo[1:], hi and hi[1:]) if p is not None)
    ordered = sorted(kept, key=lambda p: (p[0], p[1]))
    return [Point(step=st, timestamp=ts, value=_nan(v)) for st, ts, v in ordered]


# --- history ------------------------------------------------------------------------------


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def stored_count(session: Session, run_id: str, key: str) -> int:
    """Points stored for (run, key), from the summary (no scan of the points)."""
    count = session.execute(
        _SUMMARIES.select()
        .with_only_columns(_SUMMARIES.c.count)
        .where(_SUMMARIES.c.run_id == run_id, _SUMMARIES.c.key == key)
    ).scalar()
    return int(count or 0)


def _all_points(session: Session, run_id: str, key: str) -> list[Point]:
    m = _METRICS.c
    rows = session.execute(
        _METRICS.select()
        .with_only_columns(m.step, m.timestamp, m.value)
        .where(m.run_id == run_id, m.key == key)
        .order_by(m.step, m.timestamp, m.id)
    )
    return [Point(step=s, timestamp=t, value=_nan(v)) for s, t, v in rows]


# One statement, three steps: (1) bucket the run's points by position on the axis and
# aggregate each bucket's first/last axis value and min/max value (one index range scan);
# (2) per bucket, the first axis value holding that min and that max (an index range scan
# of the bucket, the buckets driving the join); (3) read back only the points at those
# axis values (index lookups). Each step is linear in the points, never points x buckets.
_M4 = """
WITH agg AS (
    SELECT ({x} - :x0) / :width AS bucket, min({x}) AS fx, max({x}) AS lx,
           min(value) AS lo, max(value) AS hi
    FROM {table} WHERE run_id = :run_id AND {key} = :key
    GROUP BY ({x} - :x0) / :width
),
arg AS (
    SELECT agg.bucket AS bucket, agg.fx AS fx, agg.lx AS lx, agg.lo AS lo, agg.hi AS hi,
           min(CASE WHEN m.value = agg.lo THEN m.{x} END) AS lox,
           min(CASE WHEN m.value = agg.hi THEN m.{x} END) AS hix
    FROM agg LEFT JOIN {table} AS m
      ON m.run_id = :run_id AND m.{key} = :key AND m.{x} >= agg.fx AND m.{x} <= agg.lx
         AND (m.value = agg.lo OR m.value = agg.hi)
    GROUP BY agg.bucket, agg.fx, agg.lx, agg.lo, agg.hi
)
SELECT arg.bucket, m.id, m.step, m.{ts}, m.value, arg.fx, arg.lx, arg.lox, arg.hix,
       arg.lo, arg.hi
FROM arg CROSS JOIN {table} AS m
WHERE m.run_id = :run_id AND m.{key} = :key AND m.{x} IN (arg.fx, arg.lx, arg.lox, arg.hix)
"""


def history(
    session: Session, run_id: str, key: str, max_points: int | None
) -> tuple[int, list[Point]]:
    """(points stored, the points in step order), downsampled by M4 to ``max_points``."""
    total = stored_count(session, run_id, key)
    if max_points is None or total <= max_points:
        return total, _all_points(session, run_id, key)
    if total >= TILE_MIN_POINTS:
        tiled = _from_tiles(session, run_id, key, total, max_points)
        if tiled is not None:
            return total, tiled
    m = _METRICS.c
    lo_step, hi_step, lo_ts, hi_ts = session.execute(
        select(
            func.min(m.step), func.max(m.step), func.min(m.timestamp), func.max(m.timestamp)
        ).where(m.run_id == run_id, m.key == key)
    ).one()
    if lo_step is None:  # deleted concurrently: nothing to show
        return 0, []
    on_time = lo_step == hi_step
    x0, x1 = (lo_ts, hi_ts) if on_time else (lo_step, hi_step)
    buckets = max(1, max_points // 4)
    width = max(1, -(-(x1 - x0 + 1) // buckets))  # ceiling: at most `buckets` buckets
    quote = session.get_bind().dialect.identifier_preparer.quote
    sql = _M4.format(
        table=quote(_METRICS.name),
        key=quote("key"),
        ts=quote("timestamp"),
        x=quote("timestamp") if on_time else "step",
    )
    stmt = text(sql).bindparams(
        bindparam("x0"), bindparam("width"), bindparam("run_id"), bindparam("key")
    )
    rows = session.execute(stmt, {"x0": x0, "width": width, "run_id": run_id, "key": key})
    # Per bucket, the candidates ordered as the full history is (step, timestamp, id);
    # keep the first at fx, the last at lx, and the first holding lo and hi.
    chosen: dict[int, dict[str, tuple[int, int, int, float | None]]] = {}
    for bucket, id_, step, ts, value, fx, lx, lox, hix, lo, hi in rows:
        x = ts if on_time else step
        order = (step, ts, id_, value)
        slots = chosen.setdefault(bucket, {})
        if x == fx and ("first" not in slots or order < slots["first"]):
            slots["first"] = order
        if x == lx and ("last" not in slots or order > slots["last"]):
            slots["last"] = order
        if x == lox and value == lo and ("min" not in slots or order < slots["min"]):
            slots["min"] = order
        if x == hix and value == hi and ("max" not in slots or order < slots["max"]):
            slots["max"] = order
    kept = sorted({o for slots in chosen.values() for o in slots.values()})
    return total, [Point(step=s, timestamp=t, value=_nan(v)) for s, t, _, v in kept]
