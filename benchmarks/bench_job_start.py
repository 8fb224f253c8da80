"""Job start overhead: from submit to the first line of user code, beside plain ``python``.

    .venv/bin/python -m benchmarks.bench_job_start [--jobs 20] [--ray-jobs 10]
                                                   [--ray-address HOST:PORT | --no-ray]

The user script's first line prints ``time.time()``; the figure for one job is that
timestamp minus the time taken just before the call that starts it (same machine, same
clock). Jobs run one after another, after one warm-up each:

- ``python script.py`` started directly with :class:`subprocess.Popen` (the peer);
- the local backend: ``Estimator(...).fit(wait=False)`` through an embedded client, whose
  controller runs in this process (submit = source upload + ``jobs.submit``, then the
  controller's admission, the contract tree, the supervisor, the job's interpreter);
- the Ray backend: the same on a Ray cluster that is already up — the one at
  ``--ray-address`` (GCS ``host:port``), else a 2-CPU local one started for the run with
  the test suite's ``ray start --head`` helper and stopped afterwards.

Goal (the jobs issue): local p50 at most 150 ms above direct ``python``. Ray: reported.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import modelyard as my
from modelyard.compute.backends.ray import shutdown_drivers

REPO = Path(__file__).resolve().parent.parent
GOAL_MS = 150.0
SCRIPT = textwrap.dedent(
    """\
    import time; print(f"T {time.time():.6f}", flush=True)
    import os
    with open(os.path.join(os.environ.get("SM_MODEL_DIR", "."), "m.txt"), "w") as fh:
        fh.write("m")
    """
)


def stamp(text: str) -> float:
    first = text.splitlines()[0]
    if not first.startswith("T "):
        raise SystemExit(f"the script's first line is {first!r}, not its timestamp")
    return float(first[2:])


def direct(script: Path) -> float:
    """Seconds from Popen to the first line of ``python script.py``."""
    workdir = script.parent
    t0 = time.time()
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=workdir,
        stdout=subprocess.PIPE,
        env={**os.environ, "SM_MODEL_DIR": str(workdir)},
    )
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"direct python run failed with exit code {proc.returncode}")
    return stamp(out.decode()) - t0


def through_jobs(client: my.Client, source: Path, backend: str) -> float:
    """Seconds from ``fit(wait=False)`` to the job's first line (waits for the job)."""
    estimator = my.Estimator("train.py", source, backend=backend, client=client)
    t0 = time.time()
    job = estimator.fit(wait=False)
    done = client.jobs.wait(job.id, logs=False)
    if done.state != "Completed":
        raise SystemExit(f"job {job.id} on {backend} ended {done.state}: {done.failure_reason}")
    lines = client.jobs.logs(job.id, limit=1).lines
    return stamp(lines[0].text) - t0


def measure(run: Callable[[], float], count: int) -> list[float]:
    run()  # warm-up: imports, the database, a first worker process
    return [run() for _ in range(count)]


def summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return (
        f"  {label:<34} p50 {statistics.median(ms):8.1f} ms   "
        f"min {ms[0]:8.1f}   p90 {p90:8.1f}   (n={len(ms)})"
    )


@contextlib.contextmanager
def ray_cluster(address: str | None, base: Path) -> Iterator[str]:
    """The GCS address of a running cluster: ``address``, or a local one for the run."""
    if address is not None:
        yield address
        return
    # The test suite's helper (a real `ray start --head --block` on free ports).
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures.ray_cluster import start_cluster

    cluster = start_cluster(base)
    try:
        yield cluster.address
    finally:
        shutdown_drivers()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs per figure (local, direct)")
    parser.add_argument("--ray-jobs", type=int, default=10, help="jobs on Ray")
    parser.add_argument("--ray-address", help="a running cluster's GCS host:port")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray figure")
    args = parser.parse_args()
    if args.jobs < 1 or args.ray_jobs < 1:
        parser.error("--jobs and --ray-jobs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-job-start-") as tmp:
        root = Path(tmp)
        source = root / "src"
        source.mkdir()
        script = source / "train.py"
        script.write_text(SCRIPT)
        os.environ["MODELYARD_HOME"] = str(root / "home")

        peer = measure(lambda: direct(script), args.jobs)
        with my.connect(home=root / "home") as client:
            local = measure(lambda: through_jobs(client, source, "local"), args.jobs)
        rows = [summary("python script.py (direct)", peer), summary("local backend", local)]
        overhead = (statistics.median(local) - statistics.median(peer)) * 1000
        verdict = "ok" if overhead <= GOAL_MS else "ABOVE GOAL"

        ray_row = None
        if not args.no_ray:
            with ray_cluster(args.ray_address, root / "ray") as address:
                os.environ["RAY_ADDRESS"] = address
                with my.connect(home=root / "home-ray") as client:
                    ray_times = measure(lambda: through_jobs(client, source, "ray"), args.ray_jobs)
            ray_row = summary("ray backend (cluster up)", ray_times)
            ray_overhead = (statistics.median(ray_times) - statistics.median(peer)) * 1000

    print(f"job start, submit -> first line of user code; {os.cpu_count()} CPUs")
    for row in rows:
        print(row)
    print(f"  {'local - direct (p50)':<34} {overhead:8.1f} ms   (goal <= {GOAL_MS:.0f}: {verdict})")
    if ray_row is not None:
        print(ray_row)
        print(f"  {'ray - direct (p50)':<34} {ray_overhead:8.1f} ms")


if __name__ == "__main__":
    main()
