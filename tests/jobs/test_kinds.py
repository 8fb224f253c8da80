"""The job-kind registry: a kind declared outside ``jobs/`` runs end to end through the jobs
service and controller, its own spec check refuses bad requests, and its finisher is
called once per job, across restarts of the finisher's controller."""

from __future__ import annotations

import ast
import datetime as dt
import platform
import re
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from jobkit import wait_for

from modelyard.client.sdk import connect
from modelyard.core.db import Database
from modelyard.core.operations import Context
from modelyard.domains import operations
from modelyard.errors import AlreadyExists, InvalidInput
from modelyard.jobs.kinds import (
    JobFinisher,
    Kind,
    check_no_user_code,
    kind_for,
    kinds,
    module_program,
    register_kind,
    unregister_kind,
)
from modelyard.jobs.schemas import GetJob, Job, SubmitJob
from modelyard.migrations import upgrade
from modelyard.runtime import Runtime
from testkit import make_settings

WAIT = 60.0
DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"

# The toy kind's program: writes its greeting as an output; waits for a file if told to.
PROGRAM = """
import json, os, pathlib, time

hps = json.loads(os.environ["SM_HPS"])
go = hps.get("wait_for")
while go and not pathlib.Path(go).exists():
    time.sleep(0.05)
out = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"]) / "greeting.txt"
out.write_text(str(hps["greeting"]))
print("toy:", hps["greeting"])
"""


def _check_toy(ctx: Context, req: SubmitJob) -> bool:
    check_no_user_code("a toy job")(ctx, req)
    if "greeting" not in req.hyperparameters:
        raise InvalidInput("a toy job needs the hyperparameter 'greeting'")
    return False


class ToyFinisher(JobFinisher):
    """Records each call: (job id, state, the greeting the program wrote)."""

    name = "toy.finisher"
    kind = "toy"
    calls: ClassVar[list[tuple[str, str, str]]] = []
    instances: ClassVar[list[ToyFinisher]] = []
    changed: ClassVar[threading.Condition] = threading.Condition()

    def __init__(self, runtime: Any, **kwargs: Any) -> None:
        super().__init__(runtime, resync_s=3600, **kwargs)  # only the outbox wakes it in time
        ToyFinisher.instances.append(self)

    def finish(self, job: Job) -> None:
        outputs = {o.path: o.digest for o in job.outputs}
        text = ""
        if "data/greeting.txt" in outputs:
            text = self.runtime.artifacts.read_bytes(outputs["data/greeting.txt"]).decode()
        with self.changed:
            self.calls.append((job.id, job.state, text))
            self.changed.notify_all()


@pytest.fixture
def toy_kind() -> Iterator[Kind]:
    kind = register_kind(
        Kind(
            "toy",
            program=module_program("toy_program"),
            validate=_check_toy,
            finisher=ToyFinisher,
        )
    )
    ToyFinisher.calls.clear()
    ToyFinisher.instances.clear()
    try:
        yield kind
    finally:
        unregister_kind("toy")


def _program_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "toyprog"
    folder.mkdir()
    (folder / "toy_program.py").write_text(textwrap.dedent(PROGRAM))
    return folder


def _submit(runtime: Runtime, **fields: Any) -> Job:
    op = runtime.operations["jobs.submit"]
    req = SubmitJob.model_validate({"kind": "toy", **fields})
    job: Job = runtime.execute(op, req, runtime.principal(None), origin="test")
    return job


def _describe(runtime: Runtime, job_id: str) -> Job:
    op = runtime.operations["jobs.describe"]
    job: Job = runtime.execute(op, GetJob(job_id=job_id), runtime.principal(None), origin="test")
    return job


def _wait_called(job_id: str) -> None:
    with ToyFinisher.changed:
        assert ToyFinisher.changed.wait_for(
            lambda: any(c[0] == job_id for c in ToyFinisher.calls), WAIT
        ), ToyFinisher.calls


def test_a_kind_declared_outside_jobs_runs_and_is_finished_once_across_restarts(
    tmp_path: Path, toy_kind: Kind
) -> None:
    folder = _program_dir(tmp_path)
    runtime = Runtime(make_settings(tmp_path))
    runtime.start_background()
    try:
        job = _submit(
            runtime,
            hyperparameters={"greeting": "hello"},
            environment={"PYTHONPATH": str(folder)},
        )
        assert job.kind == "toy" and job.name.startswith("toy-")
        assert job.spec.program is not None and job.spec.program.module == "toy_program"
        _wait_called(job.id)
        done = _describe(runtime, job.id)
        assert done.state == "Completed", done.failure_reason
        assert ToyFinisher.calls == [(job.id, "Completed", "hello")]
        assert [i.active for i in ToyFinisher.instances] == [True]

        # The finisher's controller restarts: its resync finds the job finished already.
        runtime.stop_background()
        runtime.start_background()
        restarted = ToyFinisher.instances[-1]
        assert len(ToyFinisher.instances) == 2 and restarted.active
        assert restarted.wait_idle(WAIT)
        assert ToyFinisher.calls == [(job.id, "Completed", "hello")]
    finally:
        runtime.close()


def test_a_job_that_ends_while_its_finisher_is_down_is_finished_when_it_is_back(
    tmp_path: Path, toy_kind: Kind
) -> None:
    folder = _program_dir(tmp_path)
    go = tmp_path / "go"
    runtime = Runtime(make_settings(tmp_path))
    runtime.start_background()
    try:
        [first] = ToyFinisher.instances
        job = _submit(
            runtime,
            hyperparameters={"greeting": "later", "wait_for": str(go)},
            environment={"PYTHONPATH": str(folder)},
        )
        first.stop()  # the job waits for the go file: nobody finishes it meanwhile
        go.touch()
        wait_for(lambda: _describe(runtime, job.id).state == "Completed", WAIT)
        assert ToyFinisher.calls == []
        second = ToyFinisher(runtime)
        assert second.start()
        try:
            _wait_called(job.id)
            assert second.wait_idle(WAIT)
            assert ToyFinisher.calls == [(job.id, "Completed", "later")]
        finally:
            second.stop()
    finally:
        runtime.close()


def test_an_unknown_kind_or_a_request_its_kind_refuses_writes_nothing(
    tmp_path: Path, toy_kind: Kind
) -> None:
    with connect(home=tmp_path / "home") as client:
        with pytest.raises(InvalidInput) as unknown:
            client.jobs.submit({"kind": "tuning", "algorithm": "xgboost"})
        assert unknown.value.message == (
            "unknown job kind 'tuning'; known kinds: processing, toy, training, transform"
        )
        with pytest.raises(InvalidInput, match="known kinds: processing, toy, training"):
            client.jobs.list(kind="tuning")
        with pytest.raises(InvalidInput, match="needs the hyperparameter 'greeting'"):
            client.jobs.submit({"kind": "toy"})
        with pytest.raises(InvalidInput, match="a toy job runs no algorithm"):
            client.jobs.submit({"kind": "toy", "algorithm": "xgboost", "hyperparameters": {}})
        assert client.jobs.list().total == 0
        assert client.jobs.list(kind="toy").total == 0


def test_registering_a_kind_twice_or_a_mismatched_finisher_is_refused(toy_kind: Kind) -> None:
    operations()  # imports the domains: the transform package registers its kind
    again = Kind("toy", program=module_program("other"), validate=_check_toy)
    with pytest.raises(AlreadyExists, match="'toy' is already registered"):
        register_kind(again)
    with pytest.raises(AlreadyExists, match="'training' is already registered"):
        register_kind(Kind("training", program=module_program("x"), validate=_check_toy))
    with pytest.raises(InvalidInput, match="finishes jobs of kind 'toy'"):
        register_kind(
            Kind("other", program=module_program("x"), validate=_check_toy, finisher=ToyFinisher)
        )
    with pytest.raises(InvalidInput, match="must be 1-20 lowercase"):
        register_kind(Kind("Bad-Name", program=module_program("x"), validate=_check_toy))
    assert kind_for("toy") is toy_kind
    assert [k.name for k in kinds()] == ["processing", "toy", "training", "transform"]


def test_the_upgrade_gives_every_stored_job_spec_its_program(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db.engine, "0011")
    jobs = sa.table(
        "jobs", *(sa.column(c) for c in ("id", "name", "kind", "state", "state_reason")),
        sa.column("stop_requested"), sa.column("backend"), sa.column("spec", sa.JSON()),
        sa.column("attempt_count"), sa.column("log_seq"), sa.column("outputs", sa.JSON()),
        sa.column("created_at", sa.DateTime(timezone=True)), sa.column("created_by"),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )  # fmt: skip
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    specs = {
        "job-a": ("transform", {"algorithm": None, "entry_point": None}),
        "job-b": ("training", {"algorithm": "xgboost", "entry_point": None}),
        "job-c": ("processing", {"algorithm": None, "entry_point": "prep/run.sh"}),
    }
    with db.engine.begin() as conn:
        for job_id, (kind, spec) in specs.items():
            conn.execute(
                jobs.insert().values(
                    id=job_id, name=job_id, kind=kind, state="Pending", state_reason="",
                    stop_requested=False, backend="local", spec=spec, attempt_count=0,
                    log_seq=0, outputs=[], created_at=now, created_by="t", updated_at=now,
                )
            )  # fmt: skip
    upgrade(db.engine)
    with db.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(jobs.c.id, jobs.c.spec)).all())
    assert stored["job-a"]["program"] == {"module": "modelyard.transform.worker", "script": None}
    assert stored["job-b"]["program"] == {"module": "modelyard.algorithms.xgboost", "script": None}
    assert stored["job-c"]["program"] == {"module": None, "script": "prep/run.sh"}
    db.dispose()


def test_the_example_in_the_architecture_docs_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("\n## How to add a job kind\n") :]
    section = section[: section.index("\n## ", 1)]
    [example] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    exec(compile(example, DOC.name, "exec"), {"__name__": "__main__"})
    output = capsys.readouterr().out
    assert f"platform Completed finisher saw: {[platform.platform()]}" in output
    assert "platform" not in [k.name for k in kinds()]


def test_jobs_names_no_kind_but_its_own() -> None:
    """jobs/ registers training and processing; every other kind is named only by the
    package that registers it (so a new kind needs no edit in jobs/)."""
    operations()  # every domain imported: every built-in kind registered
    others = {k.name for k in kinds()} - {"training", "processing"}
    assert "transform" in others
    package = Path(__file__).resolve().parents[2] / "src" / "modelyard" / "jobs"
    named = [
        f"{path.relative_to(package)}:{node.lineno}"
        for path in package.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in others
    ]
    assert named == []
