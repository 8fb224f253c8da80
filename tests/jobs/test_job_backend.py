"""The compute backend interface, checked the same way for every backend.

A new backend (Ray…) adds its name to ``BACKENDS`` below and must pass these unchanged:
launch and poll, log offsets (only whole lines until the end), stop, max runtime,
collecting model/output and the failure text, and finding an attempt again from its plan
alone (what a restarted control plane has).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from jobkit import wait_for

from modelyard.compute.archive import write_tar_gz
from modelyard.compute.backends import backend_class
from modelyard.compute.backends.base import AttemptPlan, ComputeBackend, Poll
from modelyard.core.artifacts import LocalArtifactStore
from modelyard.jobs.schemas import JobSpec

BACKENDS = ["local"]

SCRIPT = """
    import os, sys, time
    print("first line", flush=True)
    print("partial", end="", flush=True)
    while not os.path.exists(os.environ["GO"]):
        time.sleep(0.02)
    print(" line", flush=True)
    if os.environ.get("FAIL"):
        open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w").write("bad data")
        sys.exit(4)
    open(os.path.join(os.environ["SM_MODEL_DIR"], "m.txt"), "w").write("model")
    print("to stderr", file=sys.stderr)
"""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> ComputeBackend:
    store = LocalArtifactStore(tmp_path / "artifacts")
    return backend_class(request.param)(request.param, store, tmp_path / "home")


def _plan(backend: ComputeBackend, tmp_path: Path, **env: str) -> AttemptPlan:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "job.py").write_text(textwrap.dedent(SCRIPT))
    write_tar_gz(src, tmp_path / "src.tar.gz")
    digest = backend.artifacts.put_file(tmp_path / "src.tar.gz").digest
    spec = JobSpec.model_validate(
        {
            "kind": "training",
            "entry_point": "job.py",
            "source_digest": digest,
            "algorithm": None,
            "requirements": False,
            "hyperparameters": {},
            "arguments": [],
            "environment": {"GO": str(tmp_path / "go"), **env},
            "inputs": [],
            "resources": {},
            "backend": backend.url,
            "max_runtime_s": int(env.pop("MAX_RUNTIME", "60")),
            "retry": {},
            "metric_definitions": [],
        }
    )
    return AttemptPlan("job-test", "test", 1, spec, backend.home / "jobs" / "job-test")


def _ended(backend: ComputeBackend, plan: AttemptPlan, ref: dict[str, object]) -> Poll:
    return wait_for(lambda: (p := backend.poll(plan, ref)).state == "exited" and p, timeout=30)


def test_launch_logs_and_collect(backend: ComputeBackend, tmp_path: Path) -> None:
    plan = _plan(backend, tmp_path)
    assert backend.poll(plan, {}).state == "not_launched"
    ref = backend.launch(plan)
    assert backend.poll(plan, ref).state == "running"
    # Found again from the plan alone (after the attempt confirmed it started).
    assert backend.poll(plan, {}).state in ("launching", "running")
    wait_for(lambda: backend.poll(plan, {}).state == "running", timeout=30)
    logs = wait_for(lambda: (b := backend.read_logs(plan, ref, {}, final=False)).lines and b)
    assert logs.lines == [("stdout", "first line")]  # "partial" waits for its newline
    again = backend.read_logs(plan, ref, logs.offsets, final=False)
    assert again.lines == [] and again.offsets == logs.offsets
    (tmp_path / "go").write_text("")
    poll = _ended(backend, plan, ref)
    assert poll.exit is not None and poll.exit.succeeded
    assert poll.exit.usage is not None and poll.exit.usage.wall_seconds > 0
    rest = backend.read_logs(plan, ref, logs.offsets, final=True)
    assert rest.lines == [("stdout", "partial line"), ("stderr", "to stderr")]
    assert backend.read_logs(plan, ref, rest.offsets, final=True).offsets == rest.offsets
    collected = backend.collect(plan, ref, succeeded=True)
    assert collected.model is not None and collected.model.files == ["m.txt"]
    assert collected.failure is None
    backend.cleanup(plan, ref)


def test_failure_text_and_exit_code(backend: ComputeBackend, tmp_path: Path) -> None:
    plan = _plan(backend, tmp_path, FAIL="1")
    (tmp_path / "go").write_text("")
    ref = backend.launch(plan)
    poll = _ended(backend, plan, ref)
    assert poll.exit is not None and not poll.exit.succeeded
    assert (poll.exit.reason, poll.exit.exit_code) == ("exited", 4)
    collected = backend.collect(plan, ref, succeeded=False)
    assert collected.failure == "bad data" and collected.model is None


def test_stop_and_max_runtime(backend: ComputeBackend, tmp_path: Path) -> None:
    plan = _plan(backend, tmp_path)
    ref = backend.launch(plan)
    wait_for(lambda: backend.read_logs(plan, ref, {}, final=False).lines)
    backend.stop(plan, ref)
    poll = _ended(backend, plan, ref)
    assert poll.exit is not None and (poll.exit.reason, poll.exit.signal) == ("stopped", 15)

    (tmp_path / "second").mkdir()
    timed = _plan(backend, tmp_path / "second", MAX_RUNTIME="1")
    ref = backend.launch(timed)
    poll = _ended(backend, timed, ref)
    assert poll.exit is not None and poll.exit.reason == "max_runtime"


def test_capacity_and_validation(backend: ComputeBackend, tmp_path: Path) -> None:
    capacity = backend.capacity()
    assert capacity.cpus >= 1 and capacity.memory_mb > 0 and capacity.gpus >= 0
    plan = _plan(backend, tmp_path)
    type(backend).validate(backend.url, plan.spec)
