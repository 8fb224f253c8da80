"""Version diffs: schema changes, row counts and distribution shift against numpy."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.data.diff import PSI_EPSILON, ColumnShift, DatasetDiff, diff
from modelyard.data.formats import DataSource
from modelyard.data.profiling import profile
from modelyard.errors import InvalidInput


def source(root: Path, table: pa.Table) -> DataSource:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = root / "objects" / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return DataSource(files=[str(path)], format="parquet")


def shift_of(d: DatasetDiff, name: str) -> ColumnShift:
    return next(c for c in d.columns if c.name == name)


N = 4_000


def make(seed: int, *, x_mean: float = 0.0, colours: list[float] | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    names = np.array(["red", "green", "blue", "black"])
    p = colours or [0.5, 0.3, 0.2, 0.0]
    return pa.table(
        {
            "x": pa.array(rng.normal(x_mean, 2.0, N)),
            "y": pa.array(rng.exponential(3.0, N)),
            "k": pa.array(rng.integers(0, 3, N)),
            "colour": pa.array(names[rng.choice(4, N, p=p)]),
        }
    )


def psi_numpy(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    edges = np.unique(np.quantile(a, [i / bins for i in range(1, bins)]))
    counts_a = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1)
    counts_b = np.bincount(np.searchsorted(edges, b, side="right"), minlength=len(edges) + 1)
    pa_ = np.maximum(counts_a / len(a), PSI_EPSILON)
    pb_ = np.maximum(counts_b / len(b), PSI_EPSILON)
    return float(np.sum((pb_ - pa_) * np.log(pb_ / pa_)))


def test_same_data_shows_no_change(tmp_path: Path) -> None:
    table = make(1)
    d = diff(source(tmp_path / "a", table), source(tmp_path / "b", table))
    assert d.schema_changes.model_dump() == {"added": [], "removed": [], "type_changed": []}
    assert (d.row_count_a, d.row_count_b, d.row_count_delta) == (N, N, 0)
    assert [c.name for c in d.columns] == ["x", "y", "k", "colour"]
    for c in d.columns:
        assert not c.shifted
        assert (c.psi if c.kind == "numeric" else c.tvd) == pytest.approx(0.0, abs=1e-12)
        assert all(b.share_a == b.share_b for b in c.buckets)


def test_shifted_column_is_flagged_and_unchanged_one_is_not(tmp_path: Path) -> None:
    a, b = make(1), make(2, x_mean=2.0)  # x moves by one standard deviation
    d = diff(source(tmp_path / "a", a), source(tmp_path / "b", b))
    x, y, k = shift_of(d, "x"), shift_of(d, "y"), shift_of(d, "k")
    assert x.shifted and x.psi is not None and x.psi > 0.2
    assert x.mean_shift_std == pytest.approx(1.0, abs=0.1)
    expected_mean_shift = (np.mean(b["x"]) - np.mean(a["x"])) / np.std(a["x"], ddof=1)
    assert x.mean_shift_std == pytest.approx(expected_mean_shift, rel=1e-9)
    assert not y.shifted and y.psi is not None and y.psi < 0.05
    assert not k.shifted
    for name in ("x", "y", "k"):
        got = shift_of(d, name).psi
        want = psi_numpy(a[name].to_numpy(), b[name].to_numpy(), bins=10)
        assert got == pytest.approx(want, rel=1e-9)
    assert sum(bk.share_a for bk in x.buckets) == pytest.approx(1.0)
    assert len(x.buckets) == 10
    # k's deciles are just 0, 1 and 2: four buckets, the first (below a's minimum) empty in a.
    assert [bk.label for bk in k.buckets] == ["[-inf, 0)", "[0, 1)", "[1, 2)", "[2, +inf)"]
    assert k.buckets[0].share_a == 0.0


def test_categorical_shift_is_total_variation(tmp_path: Path) -> None:
    a, b = make(1), make(2, colours=[0.3, 0.2, 0.1, 0.4])
    d = diff(source(tmp_path / "a", a), source(tmp_path / "b", b))
    c = shift_of(d, "colour")
    assert c.kind == "categorical" and c.shifted
    share_a = {v: a["colour"].to_pylist().count(v) / N for v in ("red", "green", "blue")}
    share_b = {v: b["colour"].to_pylist().count(v) / N for v in ("red", "green", "blue", "black")}
    # a never has "black": it lands in b's "(other)" bucket.
    expected = 0.5 * (
        sum(abs(share_a[v] - share_b[v]) for v in share_a) + abs(0.0 - share_b["black"])
    )
    assert c.tvd == pytest.approx(expected, rel=1e-12)
    buckets = {bk.label: (bk.share_a, bk.share_b) for bk in c.buckets}
    assert set(buckets) == {"red", "green", "blue", "(other)"}
    assert buckets["(other)"] == (0.0, pytest.approx(share_b["black"]))
    unchanged = diff(source(tmp_path / "a", a), source(tmp_path / "c", make(3)))
    assert not shift_of(unchanged, "colour").shifted


def test_profile_of_a_supplies_the_categories(tmp_path: Path) -> None:
    a_src = source(tmp_path / "a", make(1))
    b_src = source(tmp_path / "b", make(2, colours=[0.3, 0.2, 0.1, 0.4]))
    fresh = diff(a_src, b_src)
    with_profile = diff(a_src, b_src, profile_a=profile(a_src), profile_b=profile(b_src))
    assert with_profile.schema_changes == fresh.schema_changes
    for got, want in zip(with_profile.columns, fresh.columns, strict=True):
        assert (got.name, got.shifted, got.buckets) == (want.name, want.shifted, want.buckets)
        assert (got.psi, got.tvd) == (want.psi, want.tvd)
        if want.mean_shift_std is None:
            assert got.mean_shift_std is None
        else:  # parallel sums may differ in the last bits between runs
            assert got.mean_shift_std == pytest.approx(want.mean_shift_std, rel=1e-9)


def test_schema_changes_and_row_counts(tmp_path: Path) -> None:
    a = pa.table({"id": [1, 2, 3], "gone": ["a", "b", "c"], "code": [1, 2, 3], "v": [1.0, 2, 3]})
    b = pa.table(
        {
            "id": [1.0, 2.0, 3.5, 4.0],
            "code": ["1", "2", "3", "4"],
            "v": [1.0, 2.0, 3.0, None],
            "new": [True, False, True, True],
        }
    )
    d = diff(source(tmp_path / "a", a), source(tmp_path / "b", b))
    changes = d.schema_changes
    assert [c.name for c in changes.added] == ["new"]
    assert [c.name for c in changes.removed] == ["gone"]
    assert [(t.name, t.old, t.new) for t in changes.type_changed] == [
        ("id", "int64", "double"),
        ("code", "int64", "string"),
    ]
    assert (d.row_count_a, d.row_count_b, d.row_count_delta) == (3, 4, 1)
    # int64 -> double is still numeric and compared; int64 -> string is not comparable.
    assert [c.name for c in d.columns] == ["id", "v"]
    v = shift_of(d, "v")
    assert (v.missing_ratio_a, v.missing_ratio_b) == (0.0, 0.25)


def test_timestamps_compare_as_numbers(tmp_path: Path) -> None:
    start = dt.datetime(2024, 1, 1)
    a = pa.table({"t": [start + dt.timedelta(hours=i) for i in range(500)]})
    later = pa.table({"t": [start + dt.timedelta(days=30, hours=i) for i in range(500)]})
    d = diff(source(tmp_path / "a", a), source(tmp_path / "b", later))
    t = shift_of(d, "t")
    assert t.kind == "numeric" and t.shifted
    hours = np.arange(500) * 3600.0
    assert t.mean_shift_std == pytest.approx(30 * 86400 / np.std(hours, ddof=1), rel=1e-9)


def test_empty_version_and_nan(tmp_path: Path) -> None:
    a = pa.table({"x": [1.0, 2.0, math.nan, 4.0], "s": ["a", "b", "a", None]})
    d = diff(source(tmp_path / "a", a), source(tmp_path / "b", a.slice(0, 0)))
    assert d.row_count_b == 0 and d.row_count_delta == -4
    for c in d.columns:
        assert not c.shifted and c.psi is None and c.tvd is None
    same = diff(source(tmp_path / "a", a), source(tmp_path / "c", a))
    x = shift_of(same, "x")
    assert x.psi == pytest.approx(0.0) and x.missing_ratio_a == 0.25  # NaN is not a share
    with pytest.raises(InvalidInput, match="bins"):
        diff(source(tmp_path / "a", a), source(tmp_path / "c", a), bins=1)
