"""Profiles: statistics checked against numpy/pyarrow on generated data of every kind."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from modelyard.data.formats import DataSource
from modelyard.data.profiling import (
    EXACT_TOP_VALUES_LIMIT,
    SAMPLE_ROWS,
    ColumnProfile,
    DatasetProfile,
    profile,
)
from modelyard.errors import InvalidInput


def store(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = root / "objects" / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def parquet_source(root: Path, *tables: pa.Table) -> DataSource:
    files = []
    for table in tables:
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=50_000)
        files.append(store(root, buf.getvalue()))
    return DataSource(files=files, format="parquet")


def column(p: DatasetProfile, name: str) -> ColumnProfile:
    return next(c for c in p.columns if c.name == name)


RNG = np.random.default_rng(7)
N = 5_000
VALUES = RNG.normal(10.0, 3.0, N)
NULL_MASK = RNG.random(N) < 0.1
CATS = np.array(["red", "green", "blue", "violet"])[RNG.choice(4, N, p=[0.5, 0.3, 0.15, 0.05])]
MIXED = pa.table(
    {
        "x": pa.array(VALUES, mask=NULL_MASK),
        "n": pa.array(RNG.integers(0, 7, N)),
        "colour": pa.array(CATS),
        "flag": pa.array(RNG.random(N) < 0.25, mask=RNG.random(N) < 0.05),
        "day": pa.array(
            [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in RNG.integers(0, 30, N)]
        ),
    }
)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> DatasetProfile:
    return profile(parquet_source(tmp_path_factory.mktemp("mixed"), MIXED))


def test_numeric_statistics_match_numpy(mixed: DatasetProfile) -> None:
    x = column(mixed, "x")
    present = VALUES[~NULL_MASK]
    assert mixed.row_count == N and mixed.column_count == 5
    assert x.kind == "float" and x.type == "double"
    assert x.missing == int(NULL_MASK.sum())
    assert x.missing_ratio == pytest.approx(NULL_MASK.mean())
    assert x.mean == pytest.approx(present.mean(), rel=1e-12)
    assert x.std == pytest.approx(present.std(ddof=1), rel=1e-9)
    assert x.min == present.min() and x.max == present.max()
    # Below SAMPLE_ROWS the "sample" is every value: quantiles equal numpy's exactly.
    expected = np.quantile(present, [0.01, 0.25, 0.5, 0.75, 0.99])
    assert list(x.quantiles) == ["p01", "p25", "p50", "p75", "p99"]
    assert list(x.quantiles.values()) == pytest.approx(expected, rel=1e-12)
    assert x.distinct_estimate == pytest.approx(len(present), rel=0.05)


def test_histogram_matches_numpy(mixed: DatasetProfile) -> None:
    hist = column(mixed, "x").histogram
    assert hist is not None
    present = VALUES[~NULL_MASK]
    counts, edges = np.histogram(present, bins=20, range=(present.min(), present.max()))
    assert len(hist.edges) == 21 and len(hist.counts) == 20
    assert hist.edges == pytest.approx(edges.tolist(), rel=1e-12)
    assert sum(hist.counts) == len(present)
    # Bin assignment of a value lying on an edge may differ by floating-point rounding.
    assert sum(abs(a - b) for a, b in zip(hist.counts, counts.tolist(), strict=True)) <= 2


def test_integer_column(mixed: DatasetProfile) -> None:
    n = column(mixed, "n")
    values = MIXED.column("n").to_numpy()
    assert n.kind == "integer" and n.min == 0 and n.max == 6
    assert isinstance(n.min, int)
    assert n.mean == pytest.approx(values.mean())
    assert n.distinct_estimate == 7
    expected = sorted(
        ((int(v), int(c)) for v, c in zip(*np.unique(values, return_counts=True), strict=True)),
        key=lambda vc: (-vc[1], vc[0]),
    )
    assert [(t.value, t.count) for t in n.top_values] == expected
    assert n.histogram is not None and sum(n.histogram.counts) == N


def test_low_cardinality_histogram_matches_numpy(tmp_path: Path) -> None:
    # Integers 0..6 in 5 bins: no value falls on an interior edge (1.2, 2.4, 3.6, 4.8).
    p = profile(parquet_source(tmp_path, MIXED.select(["n"])), bins=5)
    hist = column(p, "n").histogram
    assert hist is not None
    counts, edges = np.histogram(MIXED.column("n").to_numpy(), bins=5, range=(0, 6))
    assert hist.counts == counts.tolist()
    assert hist.edges == pytest.approx(edges.tolist())


def test_string_top_values_are_exact_and_ranked(mixed: DatasetProfile) -> None:
    c = column(mixed, "colour")
    values, counts = np.unique(CATS, return_counts=True)
    expected = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: -vc[1])
    assert [(t.value, t.count) for t in c.top_values] == expected
    assert c.min == "blue" and c.max == "violet"
    assert c.distinct_estimate == 4
    assert c.mean is None and c.histogram is None and c.quantiles == {}


def test_boolean_column(mixed: DatasetProfile) -> None:
    f = column(mixed, "flag").model_dump()
    flags = MIXED.column("flag")
    trues = sum(1 for v in flags.to_pylist() if v is True)
    falses = sum(1 for v in flags.to_pylist() if v is False)
    assert f["missing"] == flags.null_count
    assert f["top_values"] == [{"value": False, "count": falses}, {"value": True, "count": trues}]
    assert f["mean"] == pytest.approx(trues / (trues + falses))
    assert (f["min"], f["max"], f["distinct_estimate"]) == (False, True, 2)


def test_date_column(mixed: DatasetProfile) -> None:
    d = column(mixed, "day")
    days = MIXED.column("day").to_pylist()
    assert d.min == min(days).isoformat() and d.max == max(days).isoformat()
    top = d.top_values[0]
    assert top.count == max(days.count(v) for v in set(days))
    assert isinstance(top.value, str) and dt.date.fromisoformat(top.value) in days


def test_profile_is_json_and_round_trips(mixed: DatasetProfile) -> None:
    text = mixed.model_dump_json()
    assert DatasetProfile.model_validate_json(text) == mixed
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)


def test_temporal_decimal_and_nested_kinds(tmp_path: Path) -> None:
    utc = dt.UTC
    table = pa.table(
        {
            "ts": pa.array([dt.datetime(2024, 1, 1, 12, 30), None, dt.datetime(2023, 5, 6)]),
            "tz": pa.array(
                [dt.datetime(2024, 3, 1, tzinfo=utc), dt.datetime(2024, 1, 1, tzinfo=utc), None],
                pa.timestamp("us", tz="UTC"),
            ),
            "dec": pa.array([Decimal("1.25"), Decimal("-3.50"), None], pa.decimal128(9, 2)),
            "t": pa.array([dt.time(8, 0), dt.time(17, 30, 5), None]),
            "lst": pa.array([[1, 2], None, []]),
            "blob": pa.array([b"\x00", b"ab", None]),
        }
    )
    p = profile(parquet_source(tmp_path, table))
    ts, tz, dec, t = (column(p, n) for n in ("ts", "tz", "dec", "t"))
    assert (ts.min, ts.max) == ("2023-05-06T00:00:00", "2024-01-01T12:30:00")
    assert (tz.min, tz.max) == ("2024-01-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00")
    assert ts.top_values == [] and ts.histogram is None
    assert (dec.min, dec.max, dec.mean) == (-3.5, 1.25, pytest.approx(-1.125))
    assert dec.histogram is not None and sum(dec.histogram.counts) == 2
    assert (t.min, t.max) == ("08:00:00", "17:30:05")
    for name in ("lst", "blob"):
        other = column(p, name)
        assert other.kind == "other" and other.missing == 1 and other.min is None


def test_nan_infinity_all_null_and_constant(tmp_path: Path) -> None:
    table = pa.table(
        {
            "f": pa.array([1.0, math.nan, math.inf, -math.inf, 3.0, None]),
            "only_nan": pa.array([math.nan] * 5 + [None]),
            "empty": pa.array([None] * 6, pa.int64()),
            "nulltype": pa.array([None] * 6),
            "const": pa.array([4] * 6),
        }
    )
    p = profile(parquet_source(tmp_path, table))
    f = column(p, "f")
    assert (f.missing, f.non_finite) == (1, 3)
    assert (f.min, f.max, f.mean) == (1.0, 3.0, 2.0)
    assert f.histogram is not None and sum(f.histogram.counts) == 2
    only_nan = column(p, "only_nan")
    assert only_nan.non_finite == 5 and only_nan.mean is None and only_nan.histogram is None
    empty = column(p, "empty")
    assert empty.missing == 6 and empty.missing_ratio == 1.0
    assert empty.mean is None and empty.quantiles == {} and empty.top_values == []
    assert column(p, "nulltype").missing == 6
    const = column(p, "const")
    assert const.histogram is not None
    assert (const.histogram.edges, const.histogram.counts) == ([4.0, 4.0], [6])
    assert const.std == 0.0 and const.top_values[0].model_dump() == {"value": 4, "count": 6}
    p.model_dump_json()  # nothing unrepresentable in JSON


def test_empty_dataset(tmp_path: Path) -> None:
    p = profile(parquet_source(tmp_path, MIXED.slice(0, 0)))
    assert p.row_count == 0 and p.column_count == 5
    for c in p.columns:
        assert c.missing == 0 and c.missing_ratio == 0.0
        assert c.mean is None and c.histogram is None and c.top_values == []
    assert column(p, "x").distinct_estimate == 0


def test_large_dataset_uses_a_sample_that_is_uniform(tmp_path: Path) -> None:
    rows = 3 * SAMPLE_ROWS
    rng = np.random.default_rng(11)
    noisy = rng.normal(0, 1, rows)
    table = pa.table(
        {
            # Sorted values are where a non-uniform sample (one contiguous run) shows.
            "sorted": pa.array(np.arange(rows, dtype=np.int64)),
            "noisy": pa.array(noisy),
            "ids": pa.array([f"id-{i}" for i in range(rows)]),
            "mostly_unique": pa.array(["N/A" if i % 5 == 0 else f"u{i}" for i in range(rows)]),
        }
    )
    p = profile(parquet_source(tmp_path, table))
    s = column(p, "sorted")
    for key, q in {"p01": 0.01, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p99": 0.99}.items():
        # Rank error of a 100k-value uniform sample is ~0.2%; allow 1%.
        assert s.quantiles[key] / rows == pytest.approx(q, abs=0.01)
    noisy_q = column(p, "noisy").quantiles
    assert noisy_q["p50"] == pytest.approx(np.median(noisy), abs=0.03)
    assert noisy_q["p99"] == pytest.approx(np.quantile(noisy, 0.99), abs=0.1)
    # Moments and histograms are exact even when quantiles are sampled.
    assert s.mean == (rows - 1) / 2 and s.histogram is not None
    assert sum(s.histogram.counts) == rows
    assert s.histogram.counts == [rows // 20] * 20
    # High-cardinality text: no arbitrary "top" ids, but a real heavy hitter, exactly.
    ids = column(p, "ids")
    assert ids.distinct_estimate is not None
    assert ids.distinct_estimate > EXACT_TOP_VALUES_LIMIT and ids.top_values == []
    assert [t.model_dump() for t in column(p, "mostly_unique").top_values] == [
        {"value": "N/A", "count": rows // 5}
    ]


def test_csv_and_jsonl_give_the_same_statistics(tmp_path: Path) -> None:
    table = MIXED.select(["x", "n", "colour"])
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    csv_src = DataSource(files=[store(tmp_path, buf.getvalue())], format="csv")
    lines = "".join(json.dumps(r) + "\n" for r in table.to_pylist()).encode()
    json_src = DataSource(files=[store(tmp_path, lines)], format="jsonl")
    reference = profile(parquet_source(tmp_path, table))
    for src in (csv_src, json_src):
        p = profile(src)
        for name in ("x", "n", "colour"):
            got, want = column(p, name), column(reference, name)
            assert got.missing == want.missing
            assert got.top_values == want.top_values
            if want.mean is not None:
                assert got.mean == pytest.approx(want.mean, rel=1e-12)
                assert got.quantiles == pytest.approx(want.quantiles, rel=1e-12)


def test_several_files_are_one_dataset(tmp_path: Path) -> None:
    p = profile(parquet_source(tmp_path, MIXED.slice(0, 100), MIXED.slice(100, 50)))
    assert p.row_count == 150
    assert column(p, "x").missing == int(NULL_MASK[:150].sum())


def test_bad_value_deep_in_a_csv_is_invalid_input(tmp_path: Path) -> None:
    # pyarrow infers types from the first block; a later value that does not fit fails.
    body = "".join(f"{i},x{i}\n" for i in range(300_000)) + "oops,y\n"
    path = store(tmp_path, ("id,name\n" + body).encode())
    with pytest.raises(InvalidInput, match="oops"):
        profile(DataSource(files=[path], format="csv"))


def test_odd_column_names(tmp_path: Path) -> None:
    odd = 'quote " and space'
    p = profile(parquet_source(tmp_path, pa.table({odd: [1, 2, 2], "SELECT": ["a", "b", "b"]})))
    assert column(p, odd).top_values[0].model_dump() == {"value": 2, "count": 2}
    assert column(p, "SELECT").max == "b"


def test_arguments_and_progress(tmp_path: Path) -> None:
    src = parquet_source(tmp_path, MIXED.slice(0, 50))
    messages: list[str] = []
    p = profile(src, bins=5, top_k=2, progress=messages.append)
    assert [m.split(":")[0] for m in messages] == ["pass 1 of 3", "pass 2 of 3", "pass 3 of 3"]
    hist = column(p, "x").histogram
    assert hist is not None and len(hist.counts) == 5
    assert len(column(p, "colour").top_values) == 2
    assert profile(src, top_k=0).columns[2].top_values == []
    with pytest.raises(InvalidInput, match="bins"):
        profile(src, bins=0)
    with pytest.raises(InvalidInput, match="top_k"):
        profile(src, top_k=-1)
