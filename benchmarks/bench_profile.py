"""Profile a wide Parquet dataset with modelyard and with pandas, side by side.

    .venv/bin/python -m benchmarks.bench_profile [--rows 10000000]

The dataset (20 columns: floats, integers, low- and high-cardinality strings, booleans,
timestamps, a date; some nulls) is generated once under ``benchmarks/.data/`` and reused.
Each contender runs in a fresh interpreter, so neither inherits the other's memory or
caches; the figures are the wall time of the work itself (after imports) and the peak
resident memory of the whole process. The pandas side computes what a person would to get
the same picture: ``describe(include='all')``, null counts, a 20-bin numpy histogram per
numeric column and the ten most frequent values of every other column. CPU seconds are
printed too: on a shared machine they vary less than wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / ".data"
CHUNK_ROWS = 1_000_000


def generate(path: Path, rows: int) -> None:
    """Write the benchmark dataset chunk by chunk (bounded memory), atomically."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(42)
    categories = np.array([f"category_{i:02d}" for i in range(20)])
    colours = np.array(["red", "green", "blue"])
    base = np.datetime64("2024-01-01T00:00:00", "us")
    tmp = path.with_suffix(".tmp")
    writer: pq.ParquetWriter | None = None
    for start in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - start)

        def nulls(values: Any, share: float, n: int = n) -> pa.Array:
            return pa.array(values, mask=rng.random(n) < share)

        ids = np.arange(start, start + n)
        columns: dict[str, pa.Array] = {
            "f_normal": nulls(rng.normal(0, 1, n), 0.0),
            "f_price": nulls(rng.lognormal(3, 1, n), 0.05),
            "f_score": nulls(rng.uniform(0, 100, n), 0.0),
            "f_noisy": nulls(rng.normal(50, 10, n), 0.05),
            "f_ratio": pa.array(rng.random(n).astype(np.float32)),
            "f_big": nulls(rng.normal(1e6, 1e4, n), 0.01),
            "i_small": pa.array(rng.integers(0, 100, n)),
            "i_mid": nulls(rng.integers(0, 10_000, n), 0.02),
            "i_id": pa.array(ids),
            "i_count": pa.array(rng.poisson(3, n).astype(np.int32)),
            "s_category": nulls(categories[rng.integers(0, 20, n)], 0.1),
            "s_colour": pa.array(colours[rng.integers(0, 3, n)]),
            "s_user": pc.binary_join_element_wise(
                "user_", pc.cast(pa.array(rng.integers(0, 1_000_000, n)), pa.string()), ""
            ),
            "s_txid": pc.binary_join_element_wise(
                "tx_", pc.cast(pa.array(ids * 7919 % 1_000_000_007), pa.string()), ""
            ),
            "b_flag": nulls(rng.random(n) < 0.3, 0.01),
            "b_active": pa.array(rng.random(n) < 0.5),
            "t_event": nulls(
                base + rng.integers(0, 365 * 86_400 * 10**6, n).astype("timedelta64[us]"), 0.03
            ),
            "t_created": pa.array(base + ids.astype("timedelta64[s]")),
            "d_day": pa.array(
                np.datetime64("2020-01-01") + rng.integers(0, 2000, n).astype("timedelta64[D]")
            ),
            "i_year": pa.array(rng.integers(1950, 2024, n).astype(np.int16)),
        }
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    tmp.rename(path)


def dataset_path(rows: int) -> Path:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"profile-{rows}rows.parquet"
    if not path.exists():
        print(f"generating {path.name} ({rows:,} rows x 20 columns)...", flush=True)
        t0 = time.perf_counter()
        generate(path, rows)
        print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_modelyard(path: Path) -> dict[str, Any]:
    from modelyard.data.formats import DataSource
    from modelyard.data.profiling import profile

    t0, c0 = time.perf_counter(), cpu_seconds()
    result = profile(DataSource(files=[str(path)], format="parquet"))
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    f_noisy = next(c for c in result.columns if c.name == "f_noisy")
    check = {"mean": f_noisy.mean, "missing": f_noisy.missing}
    return {"seconds": seconds, "cpu_seconds": cpu, "check": check}


def run_pandas(path: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    t0, c0 = time.perf_counter(), cpu_seconds()
    df = pd.read_parquet(path)
    df.describe(include="all")
    df.isna().sum()
    for name in df.columns:
        col = df[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            np.histogram(col.dropna().to_numpy(), bins=20)
        else:
            col.value_counts().head(10)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    check = {"mean": float(df["f_noisy"].mean()), "missing": int(df["f_noisy"].isna().sum())}
    return {"seconds": seconds, "cpu_seconds": cpu, "check": check}


WORKERS = {"modelyard": run_modelyard, "pandas": run_pandas}


def worker(name: str, path: Path) -> None:
    out = WORKERS[name](path)
    # ru_maxrss is in KiB on Linux: the peak of this whole (fresh) process.
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def measure(name: str, path: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_profile", "--worker", name, "--path", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.path)
        return

    path = dataset_path(args.rows)
    size_mib = path.stat().st_size / 2**20
    print(f"dataset: {path.name}, {args.rows:,} rows x 20 columns, {size_mib:,.0f} MiB Parquet")
    results = {name: measure(name, path) for name in ("modelyard", "pandas")}
    for name, r in results.items():
        print(
            f"{name:>10}: {r['seconds']:8.2f} s wall  {r['cpu_seconds']:8.2f} s CPU"
            f"   peak RSS {r['peak_rss_mib']:8.0f} MiB"
        )
    my, pd_ = results["modelyard"], results["pandas"]
    print(
        f"{'speed-up':>10}: {pd_['seconds'] / my['seconds']:8.1f}x  (pandas time / modelyard time)"
    )
    print(
        f"{'memory':>10}: {pd_['peak_rss_mib'] / my['peak_rss_mib']:8.1f}x"
        "  less peak RSS with modelyard"
    )
    a, b = my["check"], pd_["check"]
    same = a["missing"] == b["missing"] and abs(a["mean"] - b["mean"]) < 1e-9 * max(
        1.0, abs(b["mean"])
    )
    print(f"{'agree':>10}: {'yes' if same else 'NO'} (f_noisy mean and null count: {a} vs {b})")


if __name__ == "__main__":
    main()
