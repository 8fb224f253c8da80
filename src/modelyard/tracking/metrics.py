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
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, case, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from modelyard.tracking.schemas import Point
from modelyard.tracking.store import MetricRow, MetricSummaryRow

_METRICS: Table = MetricRow.__table__  # type: ignore[assignment]
_SUMMARIES: Table = MetricSummaryRow.__table__  # type: ignore[assignment]


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
