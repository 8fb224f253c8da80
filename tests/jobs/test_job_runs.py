"""Jobs run for real through the SDK (embedded and over HTTP): logs, metrics, resource
usage, artifacts, failures, retries from checkpoints, max runtime, stop, following logs."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pyarrow as pa
import pytest
from jobkit import (  # noqa: F401 (live_server: a fixture)
    admission_looks,
    estimator,
    live_server,
    source,
    wait_for,
)

import modelyard as my
from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.errors import Conflict
from modelyard.jobs.controller import JobsController
from modelyard.jobs.schemas import GetJob, JobFailed, SubmitJob

WORKER = """
    import json, os, sys, time
    from modelyard.jobs import log_metric

    print("args", sys.argv[1:])
    print("hps", os.environ["SM_HPS"], os.environ["SM_HP_LEARNING-RATE"])
    print("channels", os.environ["SM_CHANNELS"], os.environ["SM_NUM_CPUS"])
    with open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")) as fh:
        print("hyperparameters.json", json.dumps(json.load(fh), sort_keys=True))
    deadline = time.process_time() + 0.3
    n = 0
    while time.process_time() < deadline:  # burn CPU so usage is measurable
        n += 1
    for epoch in range(3):
        print(f"epoch={epoch} train_loss={1.0 / (epoch + 1):.3f}")
        log_metric("accuracy", 0.5 + epoch / 10, step=epoch)
    print("to stderr", file=sys.stderr)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "weights.txt"), "w") as fh:
        fh.write("w=1")
    with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt"), "w") as fh:
        fh.write("fine")
"""


def test_a_job_runs_and_records_everything(client: Client, tmp_path: Path) -> None:
    est = estimator(
        client,
        tmp_path,
        WORKER,
        hyperparameters={"learning-rate": 0.1, "epochs": 3, "deep": True, "opt": "adam"},
        metric_definitions=[{"Name": "train:loss", "Regex": r"train_loss=([0-9.]+)"}],
    )
    job = est.fit()
    assert job.state == "Completed" and job.kind == "training"
    assert job.spec.source_digest is not None and job.spec.entry_point == "train.py"
    text = [line.text for line in client.jobs.logs(job.id).lines]
    assert (
        text[0]
        == "args ['--learning-rate', '0.1', '--epochs', '3', '--deep', 'True', '--opt', 'adam']"
    )
    assert text[1] == 'hps {"learning-rate": 0.1, "epochs": 3, "deep": true, "opt": "adam"} 0.1'
    assert text[2] == "channels [] 1"
    strings = {"deep": "True", "epochs": "3", "learning-rate": "0.1", "opt": "adam"}
    assert text[3] == f"hyperparameters.json {json.dumps(strings, sort_keys=True)}"
    assert "epoch=2 train_loss=0.333" in text and "to stderr" in text
    page = client.jobs.logs(job.id)
    assert [x.seq for x in page.lines] == list(range(1, len(page.lines) + 1))
    assert page.finished and page.state == "Completed"
    assert {x.stream for x in page.lines} == {"stdout", "stderr"}

    metrics = client.jobs.metrics(job.id)
    assert metrics.latest == {"train:loss": 0.333, "accuracy": 0.7}
    accuracy = [(p.step, p.value, p.source) for p in metrics.points if p.name == "accuracy"]
    assert accuracy == [(0, 0.5, "sdk"), (1, 0.6, "sdk"), (2, 0.7, "sdk")]
    assert job.final_metrics == metrics.latest

    (attempt,) = job.attempt_list
    assert attempt.state == "Completed" and attempt.exit_code == 0
    assert attempt.usage is not None
    assert attempt.usage.cpu_seconds >= 0.25  # the busy loop
    assert attempt.usage.peak_rss_bytes > 1_000_000 and attempt.usage.wall_seconds > 0.25
    assert attempt.usage.gpu_seconds is None
    assert attempt.backend == "local" and attempt.backend_ref["pid"] > 0

    assert job.model is not None and job.model.files == ["weights.txt"]
    with tarfile.open(fileobj=io.BytesIO(client.artifacts.read_bytes(job.model.digest))) as tar:
        member = tar.extractfile("weights.txt")
        assert member is not None and member.read() == b"w=1"
    assert [(o.path, o.size) for o in job.outputs] == [("data/report.txt", 4)]
    assert client.artifacts.read_bytes(job.outputs[0].digest) == b"fine"
    assert est.model_data == job.model.digest


def test_failure_reasons(client: Client, tmp_path: Path) -> None:
    own_words = estimator(
        client,
        tmp_path,
        """
        import os, sys
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as fh:
            fh.write("column 'label' is missing from the train channel")
        sys.exit(3)
        """,
    )
    with pytest.raises(JobFailed, match="column 'label' is missing") as err:
        own_words.fit()
    job = client.jobs.get(err.value.details["job_id"])
    assert job.state == "Failed" and job.attempt_list[0].exit_code == 3
    assert job.failure_reason == "column 'label' is missing from the train channel"
    assert job.model is None

    (tmp_path / "two").mkdir()
    crash = estimator(client, tmp_path / "two", "raise SystemExit(7)\n")
    job = crash.fit(wait=False)
    with pytest.raises(JobFailed):
        client.jobs.wait(job.id, logs=False)
    assert client.jobs.get(job.id).failure_reason == "the job's process exited with code 7"


def test_retry_resumes_from_checkpoints(tmp_path: Path) -> None:
    script = """
        import os, sys
        ckpt = os.path.join(os.environ["SM_CHECKPOINT_DIR"], "state.txt")
        attempt = os.environ["MODELYARD_JOB_ATTEMPT"]
        if os.path.exists(ckpt):
            print(f"attempt {attempt} resumed from", open(ckpt).read())
            open(os.path.join(os.environ["SM_MODEL_DIR"], "m"), "w").write("done")
        else:
            open(ckpt, "w").write("epoch=5")
            print(f"attempt {attempt} wrote a checkpoint and crashes")
            sys.exit(1)
    """
    with my.connect(home=tmp_path / "home") as client:
        job = estimator(client, tmp_path, script, max_attempts=2).fit(logs=False)
        assert job.state == "Completed"
        assert [(a.number, a.state) for a in job.attempt_list] == [(1, "Failed"), (2, "Completed")]
        assert job.attempt_list[0].failure_reason == "the job's process exited with code 1"
        lines = [(x.attempt, x.text) for x in client.jobs.logs(job.id).lines]
        assert lines == [
            (1, "attempt 1 wrote a checkpoint and crashes"),
            (2, "attempt 2 resumed from epoch=5"),
        ]


def test_max_runtime_stops_and_fails_the_job(tmp_path: Path) -> None:
    script = """
        import time
        print("sleeping", flush=True)
        time.sleep(120)
    """
    with my.connect(home=tmp_path / "home") as client:
        est = estimator(client, tmp_path, script, max_runtime_s=1, max_attempts=3)
        with pytest.raises(JobFailed, match="MaxRuntimeExceeded"):
            est.fit(logs=False)
        job = est.latest_job
        assert job is not None and len(job.attempt_list) == 1  # not retried
        (attempt,) = job.attempt_list
        assert attempt.state == "Failed" and attempt.signal == 15
        assert attempt.usage is not None and 1.0 <= attempt.usage.wall_seconds < 10


def test_stop_a_running_job(client: Client, tmp_path: Path) -> None:
    script = """
        import time
        print("started", flush=True)
        time.sleep(120)
    """
    job = estimator(client, tmp_path, script).fit(wait=False)
    wait_for(lambda: any(x.text == "started" for x in client.jobs.logs(job.id).lines))
    stopping = client.jobs.stop(job.id)
    assert stopping.stop_requested and "stop requested" in stopping.state_reason
    done = client.jobs.wait(job.id, logs=False)
    assert done.state == "Stopped"
    (attempt,) = done.attempt_list
    assert attempt.state == "Stopped" and attempt.signal == 15
    assert client.jobs.stop(job.id).state == "Stopped"  # again: a no-op


def test_stop_refuses_a_finished_job_and_pending_stops_at_once(tmp_path: Path) -> None:
    with my.connect(home=tmp_path / "home") as client:
        job = estimator(client, tmp_path, "print('ok')\n").fit(logs=False)
        with pytest.raises(Conflict, match="already ended Completed"):
            client.jobs.stop(job.id)
        with pytest.raises(Conflict, match="metrics are recorded while it runs"):
            client.jobs.log_metrics(job.id, {"late": 1.0})
    # Called through the transport, no controller runs: the job stays Pending until stopped.
    with my.connect(home=tmp_path / "home") as client:
        entry, digest = client.jobs.upload_source("train.py", tmp_path / "src")
        req = SubmitJob(entry_point=entry, source_digest=digest)
        pending = client.transport.call("jobs.submit", req)
        assert pending.state == "Pending"
        stopped = client.transport.call("jobs.stop", GetJob(job_id=pending.id))
        assert stopped.state == "Stopped" and stopped.attempt_list == []
        assert "stop requested by local" in stopped.state_reason


def test_logs_can_be_followed_while_the_job_runs(client: Client, tmp_path: Path) -> None:
    script = """
        import os, time
        for i in range(8):
            print(f"line {i}", flush=True)
            time.sleep(0.15)
        print("no newline at the end", end="")
    """
    job = estimator(client, tmp_path, script).fit(wait=False)
    seen: list[tuple[int, str]] = []
    states_during: set[str] = set()
    for line in client.jobs.follow(job.id, poll_s=0.05):
        if not seen:
            states_during.add(client.jobs.get(job.id).state)
        seen.append((line.seq, line.text))
    assert seen == [(i + 1, f"line {i}") for i in range(8)] + [(9, "no newline at the end")]
    assert states_during == {"Running"}  # the first line arrived while it ran
    assert client.jobs.get(job.id).state == "Completed"
    # Paging from a sequence number returns only what follows.
    tail = client.jobs.logs(job.id, after_seq=7, limit=1)
    assert [x.seq for x in tail.lines] == [8] and not tail.finished
    assert tail.next_after_seq == 8


def test_log_metrics_through_the_api_while_running(client: Client, tmp_path: Path) -> None:
    script = """
        import time
        print("waiting", flush=True)
        time.sleep(120)
    """
    job = estimator(client, tmp_path, script).fit(wait=False)
    wait_for(lambda: client.jobs.get(job.id).state == "Running")
    assert client.jobs.log_metrics(job.id, {"throughput": 12.5}, step=4).recorded == 1
    point = client.jobs.metrics(job.id, "throughput").points[0]
    assert (point.value, point.step, point.source, point.attempt) == (12.5, 4, "api", 1)
    client.jobs.stop(job.id)
    assert client.jobs.wait(job.id, logs=False).state == "Stopped"


def test_processing_job_with_dataset_inputs(client: Client, tmp_path: Path) -> None:
    data = client.datasets.register("points", pa.table({"x": [1, 2, 3], "y": [2, 4, 6]}))
    script = """
        import os, sys
        import pyarrow.parquet as pq
        folder = os.environ["SM_CHANNEL_POINTS"]
        (name,) = os.listdir(folder)
        path = os.path.join(folder, name)
        print("symlink", os.path.islink(path), "args", sys.argv[1:])
        table = pq.read_table(path)
        out = os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "sum.csv")
        with open(out, "w") as fh:
            fh.write(f"total\\n{sum(table.column('y').to_pylist())}\\n")
    """
    processor = my.Processor(
        "process.py",
        source(tmp_path, script, name="process.py"),
        arguments=["--mode", "sum"],
        input_mode="FastFile",
        client=client,
    )
    # One instance: a sharded channel still gets every file.
    points = client.jobs.channel("points", data, "FastFile", distribution="ShardedByS3Key")
    job = processor.run({"points": points})
    assert job.kind == "processing" and job.state == "Completed"
    assert job.spec.inputs[0].source == "dataset:points:1"
    assert job.spec.inputs[0].distribution == "ShardedByS3Key"
    assert [x.text for x in client.jobs.logs(job.id).lines] == [
        "symlink True args ['--mode', 'sum']"
    ]
    (out,) = job.outputs
    assert client.artifacts.read_bytes(out.digest) == b"total\n12\n"
    filtered = client.jobs.list(kind="processing")
    assert [j.id for j in filtered.jobs] == [job.id] and filtered.total == 1
    assert client.jobs.list(state="Failed").total == 0


def test_admission_respects_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that needs every CPU waits until the one holding a CPU has finished."""
    looks = admission_looks(monkeypatch)
    release = tmp_path / "release"
    script = f"""
        import os, time
        print("holding", flush=True)
        while not os.path.exists({str(release)!r}):
            time.sleep(0.05)
    """
    with my.connect(home=tmp_path / "home") as client:
        (tmp_path / "one").mkdir()
        (tmp_path / "two").mkdir()
        holder = estimator(client, tmp_path / "one", script).fit(wait=False)
        wait_for(lambda: client.jobs.get(holder.id).state == "Running")
        before = looks()  # no job is Pending now, so none is looked at until greedy's submit
        greedy = estimator(
            client, tmp_path / "two", "print('got them all')\n", cpus=os.cpu_count() or 1
        ).fit(wait=False)
        # Two looks at the capacity for greedy (the only Pending job): the first decision
        # was made (and committed) before the second began, so greedy was looked at and
        # refused, however slow the controller is.
        wait_for(lambda: looks() >= before + 2 or client.jobs.get(greedy.id).state != "Pending")
        assert client.jobs.get(greedy.id).state == "Pending"
        assert looks() >= before + 2
        release.write_text("go")
        assert client.jobs.wait(holder.id, logs=False).state == "Completed"
        assert client.jobs.wait(greedy.id, logs=False).state == "Completed"
        holder_end = client.jobs.get(holder.id).ended_at
        greedy_start = client.jobs.get(greedy.id).started_at
        assert holder_end is not None and greedy_start is not None
        assert greedy_start >= holder_end


def test_one_controller_per_home(tmp_path: Path) -> None:
    with my.connect(home=tmp_path / "home") as first, my.connect(home=tmp_path / "home") as second:
        first.jobs.list()
        assert isinstance(first.transport, EmbeddedTransport)
        assert isinstance(second.transport, EmbeddedTransport)
        first.transport.runtime.start_background()
        other = JobsController.for_runtime(second.transport.runtime)
        try:
            assert other.start() is False  # the first one holds the database's lease
            # ...and the second client's jobs still run, on the first one's controller.
            job = estimator(second, tmp_path, "print('ran')\n").fit(logs=False)
            assert job.state == "Completed"
        finally:
            other.stop()


def test_a_failed_launch_whose_log_cannot_be_read_either_still_fails_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend that refuses a launch (a cluster gone) may not answer the read of the
    attempt's log either: the job must still end Failed with the launch's reason, not
    stay Starting and be launched again and again."""
    from modelyard.compute.backends.base import LaunchFailed
    from modelyard.compute.backends.local import LocalBackend

    def refuse(self: LocalBackend, plan: object) -> None:
        raise LaunchFailed("the cluster at ray://gone:10001 is unreachable")

    def unreadable(self: JobsController, *args: object, **kwargs: object) -> None:
        raise ConnectionError("no answer from the cluster")

    monkeypatch.setattr(LocalBackend, "launch", refuse)
    monkeypatch.setattr(JobsController, "_tail", unreadable)
    with my.connect(home=tmp_path / "home") as client:
        job = estimator(client, tmp_path, "print('never runs')\n").fit(wait=False)
        ended = wait_for(
            lambda: (j := client.jobs.get(job.id)).state in ("Failed", "Completed") and j,
            timeout=30,
        )
        assert ended.state == "Failed"
        assert "ray://gone:10001 is unreachable" in (ended.failure_reason or "")
        assert len(ended.attempt_list) == 1
