"""The job state machine: allowed and refused transitions, and the controller's ledger
driving a job through them on both metadata stores (no processes involved)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.compute.backends.base import AttemptExit, Collected
from modelyard.jobs import ledger
from modelyard.jobs.schemas import Job, ModelArtifact, ResourceUsage, RetryPolicy, SubmitJob
from modelyard.jobs.states import ATTEMPT_TRANSITIONS, JOB_TRANSITIONS, IllegalTransition, advance
from modelyard.jobs.store import AttemptRow
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal


class Row:
    def __init__(self, state: str) -> None:
        self.state = state


ALLOWED = [
    ("Pending", "Starting"),
    ("Pending", "Stopped"),
    ("Starting", "Running"),
    ("Starting", "Pending"),
    ("Starting", "Failed"),
    ("Starting", "Stopped"),
    ("Running", "Completed"),
    ("Running", "Failed"),
    ("Running", "Stopped"),
    ("Running", "Pending"),
]


@pytest.mark.parametrize(("current", "new"), ALLOWED)
def test_allowed_job_transitions(current: str, new: str) -> None:
    row = Row(current)
    advance(row, new, what="job j")
    assert row.state == new


def test_every_other_job_transition_is_refused() -> None:
    states = list(JOB_TRANSITIONS)
    refused = [(a, b) for a in states for b in states if (a, b) not in ALLOWED]
    assert ("Pending", "Running") in refused and ("Completed", "Running") in refused
    for current, new in refused:
        row = Row(current)
        with pytest.raises(IllegalTransition) as err:
            advance(row, new, what="job j")
        assert row.state == current
        assert current in err.value.message and new in err.value.message
    with pytest.raises(IllegalTransition, match="it is final"):
        advance(Row("Failed"), "Pending", what="job j")
    with pytest.raises(IllegalTransition, match="unknown state"):
        advance(Row("Exploded"), "Pending", what="job j")


def test_attempt_transitions() -> None:
    assert ATTEMPT_TRANSITIONS["Starting"] == {"Running", "Failed", "Stopped"}
    row = Row("Starting")
    with pytest.raises(IllegalTransition):
        advance(row, "Completed", what="attempt 1", attempt=True)
    advance(row, "Running", what="attempt 1", attempt=True)
    advance(row, "Completed", what="attempt 1", attempt=True)
    with pytest.raises(IllegalTransition):
        advance(row, "Running", what="attempt 1", attempt=True)


def _submit(runtime: Runtime, tmp_path: Path, max_attempts: int) -> str:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('hi')\n")
    client = Client(EmbeddedTransport(runtime, local_principal()))
    entry, digest = client.jobs.upload_source("train.py", tmp_path / "src")
    # Through the transport, not client.jobs.submit: no controller may race these tests.
    req = SubmitJob(
        entry_point=entry, source_digest=digest, retry=RetryPolicy(max_attempts=max_attempts)
    )
    job: Job = client.transport.call("jobs.submit", req)
    assert job.state == "Pending" and job.attempt_list == []
    return job.id


def _job(runtime: Runtime, job_id: str) -> dict[str, object]:
    client = Client(EmbeddedTransport(runtime, local_principal()))
    job = client.jobs.get(job_id).model_dump()
    assert runtime._background is None  # no controller took part
    return job


def test_ledger_retries_then_completes(runtime: Runtime, tmp_path: Path) -> None:
    job_id = _submit(runtime, tmp_path, max_attempts=2)
    first = ledger.claim(runtime.db, job_id)
    assert first is not None and first.number == 1 and first.state == "Starting"
    assert ledger.claim(runtime.db, job_id) is None  # no longer Pending
    ledger.record_launch(runtime.db, first.attempt_id, {"pid": 1})
    assert _job(runtime, job_id)["state"] == "Running"

    crash = AttemptExit("exited", exit_code=3)
    assert ledger.finish_attempt(runtime.db, first.attempt_id, crash, None) == "Pending"
    job = _job(runtime, job_id)
    assert "retrying as attempt 2 of 2" in str(job["state_reason"])
    # Finishing the same attempt again (a repeat after a crash) changes nothing.
    assert ledger.finish_attempt(runtime.db, first.attempt_id, crash, None) is None

    second = ledger.claim(runtime.db, job_id)
    assert second is not None and second.number == 2
    ledger.record_launch(runtime.db, second.attempt_id, {"pid": 2})
    usage = ResourceUsage(cpu_seconds=1.5, peak_rss_bytes=10, wall_seconds=2.0)
    model = ModelArtifact(digest="a" * 64, size=3, files=["m"])
    done = AttemptExit("exited", exit_code=0, usage=usage)
    state = ledger.finish_attempt(runtime.db, second.attempt_id, done, Collected(model, [], None))
    assert state == "Completed"
    job = _job(runtime, job_id)
    attempts = job["attempt_list"]
    assert isinstance(attempts, list)
    assert [(a["number"], a["state"], a["exit_code"]) for a in attempts] == [
        (1, "Failed", 3),
        (2, "Completed", 0),
    ]
    assert attempts[0]["failure_reason"] == "the job's process exited with code 3"
    assert attempts[1]["usage"]["cpu_seconds"] == 1.5
    assert job["model"] == model.model_dump() and job["failure_reason"] is None


def test_ledger_failure_reason_prefers_the_jobs_own_words(runtime: Runtime, tmp_path: Path) -> None:
    job_id = _submit(runtime, tmp_path, max_attempts=1)
    active = ledger.claim(runtime.db, job_id)
    assert active is not None
    ledger.record_launch(runtime.db, active.attempt_id, {})
    killed = AttemptExit("exited", signal=9)
    words = Collected(None, [], "label column 'y' is missing")
    assert ledger.finish_attempt(runtime.db, active.attempt_id, killed, words) == "Failed"
    job = _job(runtime, job_id)
    assert job["failure_reason"] == "label column 'y' is missing"
    with runtime.db.transaction(write=False) as session:
        row = session.scalars(select(AttemptRow).where(AttemptRow.job_id == job_id)).one()
        assert (row.signal, row.exit_code) == (9, None)


def test_ledger_max_runtime_is_not_retried(runtime: Runtime, tmp_path: Path) -> None:
    job_id = _submit(runtime, tmp_path, max_attempts=3)
    active = ledger.claim(runtime.db, job_id)
    assert active is not None
    ledger.record_launch(runtime.db, active.attempt_id, {})
    timeout = AttemptExit("max_runtime", signal=15)
    assert ledger.finish_attempt(runtime.db, active.attempt_id, timeout, None) == "Failed"
    assert str(_job(runtime, job_id)["failure_reason"]).startswith("MaxRuntimeExceeded")


def test_ledger_launch_failure_from_starting(runtime: Runtime, tmp_path: Path) -> None:
    job_id = _submit(runtime, tmp_path, max_attempts=1)
    active = ledger.claim(runtime.db, job_id)
    assert active is not None
    failed = AttemptExit("spawn_error", message="preparing the attempt failed: disk full")
    assert ledger.finish_attempt(runtime.db, active.attempt_id, failed, None) == "Failed"
    assert _job(runtime, job_id)["failure_reason"] == "preparing the attempt failed: disk full"


def test_ledger_log_append_is_idempotent(runtime: Runtime, tmp_path: Path) -> None:
    job_id = _submit(runtime, tmp_path, max_attempts=1)
    active = ledger.claim(runtime.db, job_id)
    assert active is not None
    lines = [("stdout", "one"), ("stderr", "two")]
    assert ledger.append_logs(runtime.db, active, lines, {}, {"stdout": 4, "stderr": 4}, [])
    # The same read again (a controller that crashed before noticing the commit): refused.
    assert not ledger.append_logs(runtime.db, active, lines, {}, {"stdout": 4, "stderr": 4}, [])
    client = Client(EmbeddedTransport(runtime, local_principal()))
    page = client.jobs.logs(job_id)
    assert [(x.seq, x.stream, x.text) for x in page.lines] == [
        (1, "stdout", "one"),
        (2, "stderr", "two"),
    ]
    assert not page.finished
