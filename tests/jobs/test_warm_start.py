"""Warm starts (``modelyard.compute.warm``): modelyard's own job programs run as forks of a
server that imported the ML libraries once, and behave exactly as when started cold.

One home for the module, so the server imports once; the tests that need a server of
their own (killed, owner gone) make one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from jobkit import estimator, wait_for

import modelyard as my
from modelyard.client.sdk import Client, connect
from modelyard.compute import warm
from modelyard.jobs.schemas import Job, JobFailed
from transform.transformkit import FEATURES, fitted_model, register_model, table


@pytest.fixture(autouse=True)
def _warm_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_WARM_START", "1")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("warm") / "home"


@pytest.fixture(scope="module")
def warm_client(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELYARD_WARM_START", "1")
        client = connect(home=home)
        register_model(client, tmp_path_factory.mktemp("model"))
        client.datasets.register("customers", table(3000).select(FEATURES), profile=False)
        yield client
        client.close()


def _expected(data: pa.Table) -> list[int]:
    matrix = np.column_stack([data[name].to_numpy() for name in FEATURES])
    return [int(v) for v in fitted_model().predict(matrix)]


def _attempt_dir(home: Path, job: Job) -> Path:
    return home / "jobs" / job.id / "attempts" / str(job.attempt_list[-1].number)


def _servers(home: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in (home / "jobs" / warm.WARM_DIR).glob("*.json")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited
        return fh.read().split(") ")[1][0] != "Z"


def test_a_transform_starts_warm_and_gives_the_models_predictions(
    warm_client: Client, home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    parts = [table(1000, start=1000 * i, seed=i) for i in range(3)]
    for i, part in enumerate(parts):
        pq.write_table(part, folder / f"p{i}.parquet")
    warm_client.datasets.register("sharded", folder, profile=False)
    # Two workers: the forked job starts its worker processes (spawned) as a cold one does.
    transformer = my.Transformer("churn", batch_size=500, instance_count=2, client=warm_client)
    result = transformer.transform(
        "sharded",
        join_source="Input",
        input_filter=FEATURES,
        output_filter=["id", "prediction"],
        logs=False,
    )

    assert result.state == "Completed" and result.finalized
    out = warm_client.datasets.to_arrow(result.output_dataset, result.output_version)
    assert out["id"].to_pylist() == list(range(3000))
    assert out["prediction"].to_pylist() == [p for part in parts for p in _expected(part)]
    job = warm_client.jobs.get(result.job_id)
    attempt = job.attempt_list[-1]
    assert attempt.backend_ref["start"] == "warm" and attempt.backend_ref["pid"] > 0
    supervised = json.loads((_attempt_dir(home, job) / "supervisor.json").read_text())
    assert supervised["start"] == "warm" and supervised["pid"] == attempt.backend_ref["pid"]
    # The forked process's output reached the job's log, and its usage was measured.
    lines = [line.text for line in warm_client.jobs.logs(job.id, limit=1000).lines]
    assert "[1/2]" in "\n".join(lines) and "[2/2]" in "\n".join(lines)
    assert any(text.startswith("transform: done · 3000 rows in, 3000 rows out") for text in lines)
    assert attempt.exit_code == 0 and attempt.usage is not None
    assert attempt.usage.cpu_seconds > 0 and attempt.usage.peak_rss_bytes > 0
    [server] = _servers(home)
    assert _alive(server["pid"]) and "xgboost" in server["preloaded"]


def test_a_failing_warm_job_fails_with_its_reason(warm_client: Client, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    rows = ["id,a,b,c", *(f"{i},0.1,{'abc' if i == 7 else 0.2},0.3" for i in range(40))]
    bad.write_text("\n".join(rows) + "\n")
    warm_client.datasets.register("bad", bad, profile=False)
    request = {
        "model": "churn",
        "dataset": "bad",
        "batch_size": 16,
        "input_filter": FEATURES,
        "on_error": "stop",
    }
    submitted = warm_client.transforms.create(request)

    with pytest.raises(JobFailed, match=r"record 7 of bad\.csv failed \(on_error=stop\)"):
        warm_client.transforms.wait(submitted.job_id, logs=False)
    attempt = warm_client.jobs.get(submitted.job_id).attempt_list[-1]
    assert attempt.backend_ref["start"] == "warm" and attempt.exit_code == 1


def test_stopping_a_warm_job_ends_its_process(warm_client: Client, home: Path) -> None:
    big = table(400_000)
    warm_client.datasets.register("big", big, profile=False)
    submitted = warm_client.transforms.create(
        {"model": "churn", "dataset": "big", "batch_size": 2, "input_filter": FEATURES}
    )
    job = wait_for(
        lambda: (j := warm_client.jobs.get(submitted.job_id)).state == "Running" and j, 60
    )
    child = wait_for(
        lambda: json.loads((_attempt_dir(home, job) / "supervisor.json").read_text())["child_pid"]
    )
    assert _alive(child)

    warm_client.jobs.stop(job.id)
    stopped = wait_for(lambda: (j := warm_client.jobs.get(job.id)).finished and j, 60)
    assert stopped.state == "Stopped"
    wait_for(lambda: not _alive(child), 10)


def test_a_built_in_algorithm_trains_warm(warm_client: Client) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 4))
    data = {f"x{j}": x[:, j] for j in range(4)}
    data["label"] = (x[:, 0] - x[:, 2] > 0).astype(np.int64)
    warm_client.datasets.register("train-xgb", pa.table(data), profile=False)
    hps = {"objective": "binary:logistic", "num_round": 20, "eval_metric": "logloss"}
    job = my.Estimator(algorithm="xgboost", hyperparameters=hps, client=warm_client).fit(
        {"train": "train-xgb"}, logs=False
    )

    assert job.state == "Completed" and job.model is not None
    assert "model.ubj" in job.model.files
    assert job.attempt_list[-1].backend_ref["start"] == "warm"
    # The algorithm's metric lines reached the job's metrics through the forked stdout.
    assert "train:logloss" in warm_client.jobs.metrics(job.id).latest


def test_a_script_job_starts_cold(warm_client: Client, tmp_path: Path) -> None:
    script = """
        import sys
        print("argv", sys.argv[1:])
    """
    job = estimator(warm_client, tmp_path, script, hyperparameters={"x": 1}).fit(logs=False)

    assert job.state == "Completed"
    assert job.attempt_list[-1].backend_ref["start"] == "cold"


def test_a_killed_server_is_replaced_and_the_next_job_still_runs(
    warm_client: Client, home: Path
) -> None:
    [before] = _servers(home)
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(lambda: not _alive(before["pid"]), 10)

    result = my.Transformer("churn", client=warm_client).transform("customers", logs=False)

    assert result.state == "Completed"
    assert warm_client.datasets.to_arrow(result.output_dataset, result.output_version)[
        "prediction"
    ].to_pylist() == _expected(table(3000))
    job = warm_client.jobs.get(result.job_id)
    assert job.attempt_list[-1].backend_ref["start"] == "warm"
    [after] = _servers(home)
    assert after["pid"] != before["pid"] and _alive(after["pid"])


def test_the_server_refuses_what_is_not_an_attempt_under_its_root(
    warm_client: Client, home: Path, tmp_path: Path
) -> None:
    [server] = _servers(home)
    [fifo] = (home / "jobs" / warm.WARM_DIR).glob("*.fifo")
    outside = tmp_path / "attempt"
    outside.mkdir()
    (outside / "launch.json").write_text(
        json.dumps({"command": [sys.executable, "-m", "modelyard.compute.supervisor"]})
    )
    no_launch = home / "jobs" / "not-an-attempt"
    no_launch.mkdir()
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, f"{outside}\n{no_launch}\n\xff\n".encode("latin-1"))
    finally:
        os.close(fd)

    log = fifo.with_suffix(".log")
    wait_for(lambda: log.read_text().count("warm: refused") == 3, 10)
    assert not (outside / "supervisor.json").exists()
    assert not (outside / "supervisor.log").exists()
    assert _alive(server["pid"])  # and it still serves
    result = my.Transformer("churn", client=warm_client).transform("customers", logs=False)
    assert warm_client.jobs.get(result.job_id).attempt_list[-1].backend_ref["start"] == "warm"


def test_the_server_exits_with_its_owner(tmp_path: Path) -> None:
    home = tmp_path / "owned"
    tests = str(Path(__file__).parents[1])
    owner = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        sys.path.insert(0, {tests!r})
        from transform.transformkit import register_model, table
        import modelyard as my
        client = my.connect(home={str(home)!r})
        register_model(client, Path({str(tmp_path)!r}))
        client.datasets.register("customers", table(50).select(["a", "b", "c"]), profile=False)
        my.Transformer("churn", client=client).transform("customers", logs=False)
        os._exit(0)  # no clean shutdown: the server must notice on its own
        """
    )
    env = {**os.environ, "MODELYARD_WARM_START": "1"}
    subprocess.run([sys.executable, "-c", owner], env=env, check=True, timeout=240)

    folder = home / "jobs" / warm.WARM_DIR
    wait_for(lambda: not list(folder.glob("*.fifo")), 15)
    assert not list(folder.glob("*.json")) and not list(folder.glob("*.log"))


def test_closing_the_client_stops_its_server(tmp_path: Path) -> None:
    home = tmp_path / "closed"
    client = connect(home=home)
    try:
        register_model(client, tmp_path)
        client.datasets.register("customers", table(20).select(FEATURES), profile=False)
        my.Transformer("churn", client=client).transform("customers", logs=False)
        [server] = _servers(home)
        assert _alive(server["pid"])
    finally:
        client.close()
    wait_for(lambda: not _alive(server["pid"]), 10)
    assert list((home / "jobs" / warm.WARM_DIR).iterdir()) == []


def test_run_as_main_gives_the_module_what_a_new_interpreter_would(tmp_path: Path) -> None:
    """The fork's view: argv, cwd, environment, sys.path, __main__, thread pools, exit code."""
    modules = tmp_path / "mods"
    modules.mkdir()
    (modules / "probe_main.py").write_text(
        textwrap.dedent(
            """
            import json, os, sys
            from threadpoolctl import threadpool_info
            pools = {p["user_api"]: p["num_threads"] for p in threadpool_info()}
            print(json.dumps({
                "name": __name__, "argv": sys.argv[1:], "cwd": os.getcwd(),
                "path0": sys.path[:2], "env": dict(os.environ), "pools": pools,
            }))
            if "--fail" in sys.argv:
                raise RuntimeError("boom")
            sys.exit(int(sys.argv[-1]))
            """
        )
    )
    work = tmp_path / "work"
    work.mkdir()
    harness = textwrap.dedent(
        """
        import json, os, sys
        import numpy, sklearn.ensemble  # OpenMP and BLAS loaded before the fork, as in the server
        from modelyard.compute import warm
        launch = json.loads(sys.argv[1])
        pid = os.fork()
        if pid == 0:
            os._exit(warm._run_as_main("probe_main", launch))
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        """
    )

    def run(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], int, str]:
        launch = {"command": [sys.executable, "-m", "probe_main", *args], "env": env}
        launch["cwd"] = str(work)
        done = subprocess.run(
            [sys.executable, "-c", harness, json.dumps(launch)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "OMP_NUM_THREADS": "1", "LEAKED": "yes"},
            check=True,
        )
        report, code = done.stdout.strip().splitlines()
        return json.loads(report), int(code), done.stderr

    # The server was started with OMP_NUM_THREADS=1 and LEAKED; the job's own say otherwise.
    env = {"PYTHONPATH": str(modules), "OMP_NUM_THREADS": "3", "PATH": os.environ["PATH"]}
    seen, code, _ = run(["--flag", "3"], env)
    assert code == 3
    assert seen["name"] == "__main__" and seen["argv"] == ["--flag", "3"]
    assert seen["cwd"] == str(work) and seen["path0"] == [str(work), str(modules)]
    assert "LEAKED" not in seen["env"] and seen["env"]["OMP_NUM_THREADS"] == "3"
    assert seen["pools"]["openmp"] == 3

    seen, code, _ = run(["0"], {"PYTHONPATH": str(modules)})
    assert code == 0 and seen["pools"]["openmp"] == (os.cpu_count() or 1)

    seen, code, stderr = run(["--fail", "0"], {"PYTHONPATH": str(modules)})
    assert code == 1 and "RuntimeError: boom" in stderr


def test_only_modelyard_modules_of_this_python_start_warm() -> None:
    assert warm.module_of([sys.executable, "-m", "modelyard.transform.worker", "x"]) == (
        "modelyard.transform.worker"
    )
    assert warm.module_of([sys.executable, "train.py"]) is None
    assert warm.module_of([sys.executable, "-m", "json.tool"]) is None
    assert warm.module_of(["/usr/bin/python3", "-m", "modelyard.transform.worker"]) is None
    assert warm.module_of([sys.executable, "-m", "modelyard.x; rm -rf /"]) is None


def test_no_server_is_started_when_warm_starts_are_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_WARM_START", "0")
    client = connect(home=tmp_path / "cold")
    try:
        register_model(client, tmp_path)
        client.datasets.register("customers", table(20).select(FEATURES), profile=False)
        result = my.Transformer("churn", client=client).transform("customers", logs=False)
        attempt = client.jobs.get(result.job_id).attempt_list[-1]
        assert attempt.backend_ref["start"] == "cold"
        assert not (tmp_path / "cold" / "jobs" / warm.WARM_DIR).exists()
    finally:
        client.close()


def test_a_module_changed_on_disk_after_the_server_read_it_runs_its_new_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server keeps the code objects of the modules jobs run; a job forked after the
    file changed must not run the old code."""
    source = tmp_path / "warm_probe_module.py"
    source.write_text("VALUE = 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))

    def value() -> Any:
        namespace: dict[str, Any] = {}
        exec(warm._code_of("warm_probe_module")[1], namespace)
        return namespace["VALUE"]

    assert value() == 1
    assert warm._code_of("warm_probe_module")[1] is warm._code_of("warm_probe_module")[1]
    source.write_text("VALUE = 'changed'\n", encoding="utf-8")
    assert value() == "changed"
