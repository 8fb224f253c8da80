"""Crash safety with real SIGKILLs: of a real ``modelyard up`` while jobs run, and of an
attempt's supervisor. Every job ends re-attached and completed, finalized from what its
supervisor recorded, or failed as lost and retried — never stuck Running."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from jobkit import estimator, wait_for

import modelyard as my
from modelyard.client.sdk import Client
from testkit import free_port

LOOPER = """
    import os, time
    i = 0
    while not os.path.exists(os.environ["RELEASE"]):
        print(f"A {i}", flush=True)
        i += 1
        time.sleep(0.05)
    print("A done")
    open(os.path.join(os.environ["SM_MODEL_DIR"], "a.txt"), "w").write(str(i))
"""
WAITER = """
    import os, time
    print("B started", flush=True)
    while not os.path.exists(os.environ["RELEASE"]):
        time.sleep(0.05)
    print("B done")
"""


def _kill_leftovers(home: Path) -> None:
    """Whatever a failed test left running under ``home`` (supervisors, job processes)."""
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(home) in part for part in proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    _kill_leftovers(path)


class Server:
    """``modelyard up`` as a real subprocess on a free port."""

    def __init__(self, home: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "ab")  # noqa: SIM115 (closed in kill())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard.cli", "up", "--port", str(self.port)],
            env={**os.environ, "MODELYARD_HOME": str(home)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, timeout=90)

    def _ready(self) -> bool:
        assert self.proc.poll() is None, "modelyard up exited"
        try:
            return httpx.get(f"{self.url}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()


def _texts(client: Client, job_id: str) -> list[str]:
    lines, after = [], 0
    while page := client.jobs.logs(job_id, after_seq=after).lines:
        lines += page
        after = page[-1].seq
    assert [x.seq for x in lines] == list(range(1, len(lines) + 1))  # no gap, no duplicate
    return [x.text for x in lines]


def test_sigkill_of_modelyard_up_reattaches_and_finalizes(home: Path, tmp_path: Path) -> None:
    release_a, release_b = tmp_path / "release-a", tmp_path / "release-b"
    server = Server(home, tmp_path / "up.log")
    try:
        with my.connect(server.url) as client:
            (tmp_path / "a").mkdir()
            (tmp_path / "b").mkdir()
            job_a = estimator(
                client, tmp_path / "a", LOOPER, environment={"RELEASE": str(release_a)}
            ).fit(wait=False)
            job_b = estimator(
                client, tmp_path / "b", WAITER, environment={"RELEASE": str(release_b)}
            ).fit(wait=False)
            wait_for(lambda: len(_texts(client, job_a.id)) >= 5)
            wait_for(lambda: _texts(client, job_b.id) == ["B started"])
            supervisors = [
                client.jobs.get(j.id).attempt_list[0].backend_ref["pid"] for j in (job_a, job_b)
            ]
    finally:
        server.kill()

    # The control plane is gone; the attempts are not.
    assert all(psutil.pid_exists(pid) for pid in supervisors)
    release_b.write_text("go")  # B finishes while nothing watches it
    status_b = home / "jobs" / job_b.id / "attempts" / "1" / "status.json"
    wait_for(status_b.exists)

    server = Server(home, tmp_path / "up.log")
    try:
        with my.connect(server.url) as client:
            done_b = client.jobs.wait(job_b.id, logs=False)
            assert done_b.state == "Completed" and len(done_b.attempt_list) == 1
            assert _texts(client, job_b.id) == ["B started", "B done"]

            running_a = client.jobs.get(job_a.id)
            assert running_a.state == "Running" and len(running_a.attempt_list) == 1
            seen = len(_texts(client, job_a.id))
            wait_for(lambda: len(_texts(client, job_a.id)) > seen + 3)  # tailing resumed
            release_a.write_text("go")
            done_a = client.jobs.wait(job_a.id, logs=False)
            assert done_a.state == "Completed" and len(done_a.attempt_list) == 1
            texts = _texts(client, job_a.id)
            assert texts[-1] == "A done"
            assert texts[:-1] == [f"A {i}" for i in range(len(texts) - 1)]
            assert done_a.model is not None
            assert client.jobs.list(state="Running").total == 0
    finally:
        server.kill()


def test_sigkill_of_a_supervisor_fails_the_attempt_and_retries(home: Path, tmp_path: Path) -> None:
    script = """
        import os, time
        if os.environ["MODELYARD_JOB_ATTEMPT"] == "1":
            print("first attempt waits", flush=True)
            time.sleep(120)
        print("second attempt runs")
    """
    with my.connect(home=home) as client:
        job = estimator(client, tmp_path, script, max_attempts=2).fit(wait=False)
        wait_for(lambda: _texts(client, job.id) == ["first attempt waits"])
        sup = json.loads(
            (home / "jobs" / job.id / "attempts" / "1" / "supervisor.json").read_text()
        )
        os.kill(sup["pid"], signal.SIGKILL)
        done = client.jobs.wait(job.id, logs=False)
        assert done.state == "Completed"
        first, second = done.attempt_list
        assert first.state == "Failed" and first.failure_reason is not None
        assert first.failure_reason.startswith("supervisor lost")
        assert second.state == "Completed"
        assert _texts(client, job.id) == ["first attempt waits", "second attempt runs"]

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: gone(sup["child_pid"]), timeout=10)  # the orphaned job died with it


def test_a_lost_attempt_without_retries_fails_the_job(home: Path, tmp_path: Path) -> None:
    script = """
        import time
        print("waiting", flush=True)
        time.sleep(120)
    """
    with my.connect(home=home) as client:
        job = estimator(client, tmp_path, script).fit(wait=False)
        wait_for(lambda: _texts(client, job.id) == ["waiting"])
        sup = json.loads(
            (home / "jobs" / job.id / "attempts" / "1" / "supervisor.json").read_text()
        )
        os.kill(sup["pid"], signal.SIGKILL)
        with pytest.raises(my.ModelyardError, match="supervisor lost"):
            client.jobs.wait(job.id, logs=False)
        assert client.jobs.get(job.id).state == "Failed"
