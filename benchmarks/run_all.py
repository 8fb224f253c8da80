"""Run every benchmark, one after another, each printing its own figures and ratios.

``make bench`` runs this. Each benchmark runs modelyard beside the strongest peer on
the same data in the same run; copy the printed figures into docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    "benchmarks.bench_artifacts",
    "benchmarks.bench_profile",
    "benchmarks.bench_xgboost",
    "benchmarks.bench_job_start",
    "benchmarks.bench_tracking",
    "benchmarks.bench_transform",
    "benchmarks.bench_serving",
    "benchmarks.bench_console",
    "benchmarks.bench_cli",
]


def main() -> int:
    failed = []
    for module in BENCHMARKS:
        print(f"\n=== {module} ===", flush=True)
        if subprocess.run([sys.executable, "-m", module]).returncode != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
