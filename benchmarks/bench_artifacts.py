"""Artifact store ingest beside ``sha256sum``: throughput and peak memory of ``put_file``.

    .venv/bin/python -m benchmarks.bench_artifacts [--size-mib N]   (default 1024)

Generates ``benchmarks/.data/random-<N>mib.bin`` once (incompressible bytes), reads it
once so both contenders start from the page cache, then takes the best of 3 runs of

- ``sha256sum FILE`` (the peer: hashing alone, no copy), and
- ``open_store(<fresh dir>).put_file(FILE)`` in a child process: hash + copy + fsync +
  rename, timed inside the child around the call (interpreter start-up excluded); its
  peak RSS comes from ``wait4`` and includes the interpreter and imports, which an
  import-only child measures for reference.

Goals: modelyard/sha256sum throughput ratio >= 0.8, peak RSS < 100 MB. MB = 10**6 bytes.
The store is written to a temp directory beside the data file, on the same file system.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "benchmarks" / ".data"
RUNS = 3
RATIO_GOAL = 0.8
RSS_GOAL_MB = 100.0
MIB = 1 << 20


def make_data(size_mib: int) -> Path:
    """The input file, created once per size; returns its path."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"random-{size_mib}mib.bin"
    if path.exists() and path.stat().st_size == size_mib * MIB:
        return path
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as out:
        for _ in range(size_mib):
            out.write(os.urandom(MIB))
    os.replace(tmp, path)
    return path


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(8 * MIB):
            pass


def time_sha256sum(path: Path) -> tuple[float, str]:
    """Best wall time of ``sha256sum`` over RUNS runs, and the digest it printed."""
    best = float("inf")
    digest = ""
    for _ in range(RUNS):
        start = time.perf_counter()
        out = subprocess.run(
            ["sha256sum", str(path)], check=True, capture_output=True, text=True
        ).stdout
        best = min(best, time.perf_counter() - start)
        digest = out.split()[0]
    return best, digest


def run_child(args: list[str]) -> tuple[dict[str, object], float]:
    """Run this module as a child; its JSON result and its peak RSS in MB (from wait4)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_artifacts", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child {cmd} failed with status {proc.returncode}")
    # ru_maxrss is in KiB on Linux.
    return json.loads(output), usage.ru_maxrss * 1024 / 1e6


def child_put(path: str, store_dir: str) -> None:
    """Child mode: one put_file into a fresh store; prints seconds and the digest."""
    from modelyard.core.artifacts import open_store

    store = open_store(store_dir)
    start = time.perf_counter()
    info = store.put_file(path)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "digest": info.digest, "size": info.size}))


def child_import_only() -> None:
    """Child mode: the same imports, no work (the RSS floor)."""
    import modelyard.core.artifacts  # noqa: F401

    print(json.dumps({}))


def time_modelyard(path: Path) -> tuple[float, str, float]:
    """Best put_file time over RUNS fresh stores, its digest, and the highest peak RSS."""
    best = float("inf")
    digest = ""
    peak = 0.0
    for _ in range(RUNS):
        store_dir = tempfile.mkdtemp(prefix="store-", dir=DATA_DIR)
        try:
            result, rss = run_child(["--child-put", str(path), store_dir])
        finally:
            shutil.rmtree(store_dir, ignore_errors=True)
        seconds = result["seconds"]
        assert isinstance(seconds, float)
        best = min(best, seconds)
        digest = str(result["digest"])
        peak = max(peak, rss)
    return best, digest, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="input size (MiB)")
    parser.add_argument("--child-put", nargs=2, metavar=("FILE", "STORE"), help=argparse.SUPPRESS)
    parser.add_argument("--child-import-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_put:
        child_put(*args.child_put)
        return
    if args.child_import_only:
        child_import_only()
        return
    if args.size_mib < 1:
        parser.error("--size-mib must be at least 1")
    if shutil.which("sha256sum") is None:
        raise SystemExit("sha256sum (GNU coreutils) is needed as the baseline")

    path = make_data(args.size_mib)
    size = path.stat().st_size
    warm(path)
    peer_s, peer_digest = time_sha256sum(path)
    ours_s, our_digest, peak_mb = time_modelyard(path)
    _, floor_mb = run_child(["--child-import-only"])
    if our_digest != peer_digest:
        raise SystemExit(f"digest mismatch: modelyard {our_digest}, sha256sum {peer_digest}")

    peer_mbps = size / peer_s / 1e6
    ours_mbps = size / ours_s / 1e6
    ratio = ours_mbps / peer_mbps
    ratio_verdict = "ok" if ratio >= RATIO_GOAL else "BELOW GOAL"
    rss_verdict = "ok" if peak_mb < RSS_GOAL_MB else "ABOVE GOAL"
    rows = [
        ("sha256sum (hash only)", f"{peer_mbps:8.0f} MB/s  ({peer_s:.2f} s)"),
        ("modelyard put_file (hash+copy+fsync)", f"{ours_mbps:8.0f} MB/s  ({ours_s:.2f} s)"),
        (
            "ratio modelyard/sha256sum",
            f"{ratio:8.2f}  (goal >= {RATIO_GOAL}: {ratio_verdict})",
        ),
        ("peak RSS of the put_file process", f"{peak_mb:8.1f} MB  (goal < 100: {rss_verdict})"),
        ("  of which interpreter + imports", f"{floor_mb:8.1f} MB"),
        ("  added by put_file itself", f"{peak_mb - floor_mb:8.1f} MB"),
    ]
    print(
        f"artifact ingest: {size / 1e6:.0f} MB ({args.size_mib} MiB), best of {RUNS}, "
        f"{os.cpu_count()} CPUs"
    )
    for label, value in rows:
        print(f"  {label:<38} {value}")
    print(f"  digest {our_digest} (matches sha256sum)")


if __name__ == "__main__":
    main()
