"""Two processes on one database: the jobs controller runs in the one holding its lease,
is woken by the other's writes through the outbox, and is taken over when it dies — with
every attempt launched once."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from jobkit import estimator, wait_for

from modelyard.client.sdk import Client, EmbeddedTransport, connect
from modelyard.jobs.controller import JobsController

REPO = Path(__file__).resolve().parents[2]

# A `modelyard up` as far as jobs go: a runtime with its jobs controller, whose periodic
# resync is 600 s away, so only the outbox can tell it of a job submitted elsewhere. It
# writes "holding" (or "standby") once its start-up resync is done.
_HOLDER = """
import sys
from pathlib import Path
from modelyard.config import Settings
from modelyard.jobs.controller import JobsController
from modelyard.runtime import Runtime

home, db, status = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
runtime = Runtime(Settings.from_env(home=home, db_url=db))
controller = JobsController.for_runtime(runtime, resync_s=600.0)
held = controller.start()
assert controller.wait_idle(60)
status.write_text("holding" if held else "standby")
sys.stdin.read()  # until the test kills it
"""

# Each start of the job's process adds a line to $MARKER: one line means one launch.
_JOB = """
    import os, time
    with open(os.environ["MARKER"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    i = 0
    while not os.path.exists(os.environ["RELEASE"]):
        print(f"tick {i}", flush=True)
        i += 1
        time.sleep(0.05)
    print("released")
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    for proc in psutil.process_iter(["cmdline"]):  # what a failed test left running
        if any(str(path) in part for part in proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _jobs_controller(client: Client) -> JobsController:
    assert isinstance(client.transport, EmbeddedTransport)
    found = [s for s in client.transport.runtime._background or [] if isinstance(s, JobsController)]
    assert len(found) == 1
    return found[0]


def _texts(client: Client, job_id: str) -> list[str]:
    lines, after = [], 0
    while page := client.jobs.logs(job_id, after_seq=after).lines:
        lines += page
        after = page[-1].seq
    assert [x.seq for x in lines] == list(range(1, len(lines) + 1))  # no gap, no duplicate
    return [x.text for x in lines]


def test_the_other_process_wakes_the_holder_through_the_outbox_and_takes_over_when_it_dies(
    home: Path, tmp_path: Path, db_url: str
) -> None:
    db = db_url  # SQLite and PostgreSQL
    status = tmp_path / "holder-status"
    release, marker = tmp_path / "release", tmp_path / "launches"
    # The database exists (migrated) before either process starts.
    client = connect(home=home, db=db)
    with open(tmp_path / "holder.log", "wb") as holder_log:
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(home), db, str(status)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stderr=holder_log,
        )
    try:
        wait_for(lambda: status.exists() or holder.poll() is not None, timeout=90)
        assert holder.poll() is None, (tmp_path / "holder.log").read_text()
        assert status.read_text() == "holding"

        # This process: a runtime with its own controllers (the jobs API starts them, as
        # `modelyard up` would), standing by; the job is submitted here.
        assert isinstance(client.transport, EmbeddedTransport)
        client.transport.runtime.start_background()
        here = _jobs_controller(client)
        assert not here.active
        job = estimator(
            client,
            tmp_path,
            _JOB,
            environment={"RELEASE": str(release), "MARKER": str(marker)},
        ).fit(wait=False)
        # Admitted and launched by the holder, told by the outbox (its resync is 600 s away).
        wait_for(lambda: client.jobs.get(job.id).state == "Running", timeout=30)
        wait_for(lambda: len(_texts(client, job.id)) >= 3, timeout=30)  # the holder tails it
        assert not here.active

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        # The job outlives its controller; this process takes the lease over and goes on
        # tailing the same attempt.
        wait_for(lambda: here.active, timeout=60)
        seen = len(_texts(client, job.id))
        wait_for(lambda: len(_texts(client, job.id)) > seen + 3, timeout=30)
        release.write_text("go")
        done = client.jobs.wait(job.id, logs=False)
        assert done.state == "Completed"
        assert len(done.attempt_list) == 1 and done.attempt_list[0].state == "Completed"
        assert len(marker.read_text().splitlines()) == 1  # launched once, never again
        texts = _texts(client, job.id)
        assert texts[-1] == "released"
        assert texts[:-1] == [f"tick {i}" for i in range(len(texts) - 1)]

        # A job submitted now runs here.
        (tmp_path / "second").mkdir()
        second = estimator(client, tmp_path / "second", "print('ran')\n").fit(logs=False)
        assert second.state == "Completed"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        assert holder.stdin is not None
        holder.stdin.close()
        client.close()
