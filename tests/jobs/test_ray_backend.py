"""The Ray backend on a real local Ray cluster (``fixtures.ray_cluster``).

The backend conformance suite of ``test_job_backend.py`` runs here unchanged against
``ray`` (its tests are imported, and this module's ``backend`` fixture gives them a Ray
backend). Then, through the SDK: a job completes with logs, metrics and a model; the
failure reason comes from ``output/failure``; stop; two hosts get their ``SM_HOSTS`` /
``SM_CURRENT_HOST`` and train XGBoost and LightGBM data-parallel through the tracker
variables; a job survives its control plane (runtime and Ray connection) being thrown
away and recreated; an attempt whose actor dies is lost and retried; a launch waits for
the Ray driver process being replaced.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
from jobkit import estimator, wait_for
from test_job_backend import (  # the conformance suite, run here against Ray
    _ended,
    _plan,
    test_capacity_and_validation,
    test_failure_text_and_exit_code,
    test_launch_logs_and_collect,
    test_stop_and_max_runtime,
)

import modelyard as my
from fixtures.ray_cluster import RayCluster, kill_named_actors
from modelyard.compute.backends import backend_class
from modelyard.compute.backends import ray as ray_backend_module
from modelyard.compute.backends import ray_driver as ray_driver_module
from modelyard.compute.backends.base import AttemptExit, ComputeBackend, LaunchFailed
from modelyard.compute.backends.ray import RayBackend, driver_pids, ray_address
from modelyard.compute.backends.ray_driver import (
    NAMESPACE,
    RayDriver,
    cluster_environments,
    combine_exits,
)
from modelyard.compute.backends.ray_worker import HostInfo
from modelyard.core.artifacts import LocalArtifactStore
from modelyard.endpoints.ray_replica import ReplicaTask, ReplicaWorker
from modelyard.errors import InvalidInput
from modelyard.jobs.schemas import ResolvedChannel, ResourceUsage
from modelyard.jobs.workload import shard

__all__ = [
    "test_capacity_and_validation",
    "test_failure_text_and_exit_code",
    "test_launch_logs_and_collect",
    "test_stop_and_max_runtime",
]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _kill_actors_of(backend: RayBackend) -> None:
    """Whatever attempts a test left behind (actors hold CPUs of the 2-CPU cluster)."""
    kill_named_actors(NAMESPACE, f"modelyard.{backend.tag}.")


@pytest.fixture
def backend(ray_backend_env: RayCluster, tmp_path: Path) -> Iterator[ComputeBackend]:
    """The conformance suite's backend: Ray, on the session's cluster."""
    store = LocalArtifactStore(tmp_path / "artifacts")
    made = backend_class("ray")("ray", store, tmp_path / "home")
    assert isinstance(made, RayBackend)
    made.stop_grace_s = 2.0
    yield made
    _kill_actors_of(made)


@pytest.fixture
def home(ray_backend_env: RayCluster, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    _kill_actors_of(RayBackend("ray", LocalArtifactStore(tmp_path / "a"), path))


# -- no cluster needed ------------------------------------------------------------------------


def test_backend_urls() -> None:
    assert ray_address("ray") == "auto"
    assert ray_address("ray://head.example:10001") == "ray://head.example:10001"
    assert ray_address("ray://head") == "ray://head:10001"
    for bad in ("ray://", "ray://h:x", "ray://h:1/path", "ray://h:1?a=b", "ray://u@h:1"):
        with pytest.raises(InvalidInput, match="Ray backend URL"):
            ray_address(bad)
    assert backend_class("ray://head:10001") is RayBackend


def test_shards_take_every_nth_file_by_path() -> None:
    files = [{"path": f"part-{i}.csv", "digest": "a" * 64, "size": 1} for i in (3, 0, 2, 1, 4)]
    channel = ResolvedChannel.model_validate(
        {"name": "train", "mode": "File", "content_type": None, "source": "files", "files": files}
    )
    shards = [[f.path for f in shard(channel, i, 2).files] for i in range(2)]
    assert shards == [["part-0.csv", "part-2.csv", "part-4.csv"], ["part-1.csv", "part-3.csv"]]
    assert [f.path for f in shard(channel, 5, 6).files] == []


def test_combined_exit_names_the_host_that_failed() -> None:
    usage = ResourceUsage(cpu_seconds=1.0, peak_rss_bytes=10, wall_seconds=2.0)
    ok = AttemptExit("exited", 0, usage=usage, started_at=T0, ended_at=T0)
    crashed = AttemptExit("exited", 3, usage=usage, message="boom")
    stopped = AttemptExit("stopped", signal=15, usage=usage)
    both = combine_exits(["algo-1", "algo-2"], [ok, ok])
    assert both.succeeded and both.usage is not None and both.usage.cpu_seconds == 2.0
    failed = combine_exits(["algo-1", "algo-2"], [stopped, crashed])
    assert (failed.reason, failed.exit_code, failed.message) == ("exited", 3, "algo-2: boom")
    assert combine_exits(["algo-1", "algo-2"], [stopped, stopped]).reason == "stopped"


def test_cluster_environment_contract() -> None:
    infos = [
        HostInfo(
            "algo-1",
            "10.0.0.1",
            None,
            "a",
            1,
            lgbm_port=1001,
            xgb_tracker={"uri": "10.0.0.1", "port": "9091"},
        ),
        HostInfo("algo-2", "10.0.0.2", None, "b", 2, lgbm_port=1002),
    ]
    one, two = cluster_environments(infos)
    assert json.loads(one["MODELYARD_HOST_ADDRESSES"]) == {
        "algo-1": "10.0.0.1",
        "algo-2": "10.0.0.2",
    }
    assert one["MODELYARD_LGBM_MACHINES"] == "10.0.0.1:1001,10.0.0.2:1002"
    assert (one["MODELYARD_LGBM_LOCAL_LISTEN_PORT"], two["MODELYARD_LGBM_LOCAL_LISTEN_PORT"]) == (
        "1001",
        "1002",
    )
    assert (
        two["MODELYARD_XGB_TRACKER_URI"] == "10.0.0.1"
        and two["MODELYARD_XGB_TRACKER_PORT"] == "9091"
    )
    assert cluster_environments(infos[:1]) == [{}]


# -- through the SDK --------------------------------------------------------------------------

WORKER = """
    import os, sys
    from modelyard.jobs import log_metric
    print("host", os.environ["SM_CURRENT_HOST"], os.environ["SM_HOSTS"])
    for epoch in range(3):
        print(f"epoch={epoch} loss={1.0 / (epoch + 1):.3f}")
        log_metric("accuracy", 0.5 + epoch / 10, step=epoch)
    print("to stderr", file=sys.stderr)
    with open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "rows.csv")) as fh:
        print("rows", len(fh.read().splitlines()))
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "weights.txt"), "w") as fh:
        fh.write("w=1")
"""


def test_a_job_runs_on_ray_with_logs_metrics_and_model(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    with my.connect(home=home) as client:
        est = estimator(
            client,
            tmp_path,
            WORKER,
            backend="ray",
            metric_definitions=[{"Name": "loss", "Regex": r"loss=([0-9.]+)"}],
        )
        job = est.fit({"train": data}, logs=False)
        assert job.state == "Completed" and job.backend == "ray"
        texts = [(x.stream, x.text) for x in client.jobs.logs(job.id).lines]
        assert texts[0] == ("stdout", 'host algo-1 ["algo-1"]')
        assert ("stdout", "rows 3") in texts and ("stderr", "to stderr") in texts
        metrics = client.jobs.metrics(job.id)
        assert metrics.latest == {"accuracy": 0.7, "loss": pytest.approx(0.333)}
        assert job.model is not None and job.model.files == ["weights.txt"]
        (attempt,) = job.attempt_list
        assert attempt.backend_ref["actors"][0].endswith(f"{job.id}.1.algo-1")
        assert attempt.usage is not None and attempt.usage.wall_seconds > 0


def test_a_job_runs_through_a_ray_client_address(
    home: Path, tmp_path: Path, ray_backend_env: RayCluster
) -> None:
    """``ray://host:port`` (Ray Client, for a control plane outside the cluster)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n1,2\n")
    with my.connect(home=home) as client:
        est = estimator(client, tmp_path, WORKER, backend=ray_backend_env.client_address)
        job = est.fit({"train": data}, logs=False)
        assert job.state == "Completed", job.failure_reason
        assert job.backend == ray_backend_env.client_address
        texts = [(x.stream, x.text) for x in client.jobs.logs(job.id).lines]
        assert texts[0] == ("stdout", 'host algo-1 ["algo-1"]') and ("stdout", "rows 2") in texts
        assert client.jobs.metrics(job.id).latest["accuracy"] == 0.7
        assert job.model is not None and job.model.files == ["weights.txt"]


def test_failure_reason_and_stop(home: Path, tmp_path: Path) -> None:
    failing = """
        import os, sys
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as fh:
            fh.write("label column 'y' is missing")
        sys.exit(3)
    """
    looping = """
        import time
        print("looping", flush=True)
        while True:
            time.sleep(0.05)
    """
    with my.connect(home=home) as client:
        (tmp_path / "f").mkdir()
        (tmp_path / "s").mkdir()
        with pytest.raises(my.ModelyardError, match="label column 'y' is missing"):
            estimator(client, tmp_path / "f", failing, backend="ray").fit(logs=False)
        job = estimator(client, tmp_path / "s", looping, backend="ray").fit(wait=False)
        wait_for(lambda: [x.text for x in client.jobs.logs(job.id).lines] == ["looping"])
        client.jobs.stop(job.id)
        done = client.jobs.wait(job.id, logs=False)
        assert done.state == "Stopped" and done.attempt_list[0].signal == 15


TWO_HOSTS = """
    import json, os
    import numpy as np
    host, hosts = os.environ["SM_CURRENT_HOST"], json.loads(os.environ["SM_HOSTS"])
    config = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "resourceconfig.json")))
    print("contract", host, hosts, config["current_host"], config["hosts"], flush=True)
    rank = hosts.index(host)
    rng = np.random.default_rng(rank)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(float)

    import xgboost as xgb
    from xgboost import collective
    with collective.CommunicatorContext(
        dmlc_tracker_uri=os.environ["MODELYARD_XGB_TRACKER_URI"],
        dmlc_tracker_port=int(os.environ["MODELYARD_XGB_TRACKER_PORT"]),
        dmlc_task_id=host,
    ):
        world = collective.get_world_size()
        booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(X, y), 3)
    print("xgboost world", world, flush=True)

    import lightgbm as lgb
    params = {
        "objective": "binary", "tree_learner": "data", "num_machines": len(hosts),
        "machines": os.environ["MODELYARD_LGBM_MACHINES"],
        "local_listen_port": int(os.environ["MODELYARD_LGBM_LOCAL_LISTEN_PORT"]),
        "num_threads": 1, "verbose": -1, "pre_partition": True, "time_out": 2,
    }
    model = lgb.train(params, lgb.Dataset(X, y), num_boost_round=3)
    print("lightgbm trees", model.num_trees(), flush=True)
    if rank == 0:
        booster.save_model(os.path.join(os.environ["SM_MODEL_DIR"], "model.ubj"))
"""


def test_two_hosts_get_the_contract_and_train_data_parallel(home: Path, tmp_path: Path) -> None:
    with my.connect(home=home) as client:
        est = estimator(client, tmp_path, TWO_HOSTS, backend="ray", instance_count=2)
        job = est.fit(logs=False)
        texts = [x.text for x in client.jobs.logs(job.id).lines]
        both = "['algo-1', 'algo-2']"
        assert f"contract algo-1 {both} algo-1 {both}" in texts
        assert f"[algo-2] contract algo-2 {both} algo-2 {both}" in texts
        assert "xgboost world 2" in texts and "[algo-2] xgboost world 2" in texts
        assert "lightgbm trees 3" in texts and "[algo-2] lightgbm trees 3" in texts
        assert job.model is not None and job.model.files == ["model.ubj"]  # algo-1's
        assert set(job.attempt_list[0].backend_ref["hosts"]) == {"algo-1", "algo-2"}


def test_a_sharded_channel_is_split_across_hosts(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        (data / f"part-{i}.csv").write_text(str(i))
    script = """
        import os
        print("files", sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"])), flush=True)
    """
    with my.connect(home=home) as client:
        channel = client.jobs.channel("train", data, distribution="ShardedByS3Key")
        est = estimator(client, tmp_path, script, backend="ray", instance_count=2)
        job = est.fit({"train": channel}, logs=False)
        texts = sorted(x.text for x in client.jobs.logs(job.id).lines)
        assert texts == [
            "[algo-2] files ['part-1.csv', 'part-3.csv']",
            "files ['part-0.csv', 'part-2.csv']",
        ]


def _csv(path: Path, rng: np.random.Generator, n: int) -> None:
    x = rng.normal(size=(n, 3))
    label = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    rows = [f"{y},{a:.5f},{b:.5f},{c:.5f}" for y, (a, b, c) in zip(label, x, strict=True)]
    lines = ["label,x0,x1,x2", *rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("algorithm", "hps", "model_file"),
    [
        ("xgboost", {"objective": "binary:logistic", "num_round": 5}, "model.ubj"),
        ("lightgbm", {"objective": "binary", "num_boost_round": 5}, "model.txt"),
    ],
)
def test_built_in_gbdt_trains_data_parallel_on_two_hosts(
    home: Path, tmp_path: Path, algorithm: str, hps: dict[str, object], model_file: str
) -> None:
    rng = np.random.default_rng(7)
    train, valid = tmp_path / "train", tmp_path / "validation"
    train.mkdir()
    valid.mkdir()
    for i in range(4):
        _csv(train / f"part-{i}.csv", rng, 150)
    _csv(valid / "valid.csv", rng, 200)
    with my.connect(home=home) as client:
        inputs = {
            "train": client.jobs.channel("train", train, distribution="ShardedByS3Key"),
            "validation": client.jobs.channel("validation", valid),
        }
        est = my.Estimator(
            algorithm=algorithm,
            hyperparameters=hps,
            backend="ray",
            instance_count=2,
            client=client,
        )
        job = est.fit(inputs, logs=False)
        assert job.state == "Completed", job.failure_reason
        assert job.model is not None and model_file in job.model.files
        texts = [x.text for x in client.jobs.logs(job.id).lines]
        assert not [t for t in texts if t.startswith("[algo-2] #metric")]  # algo-1 reports
        latest = client.jobs.metrics(job.id).latest
        validation = {k: v for k, v in latest.items() if k.startswith("validation:")}
        assert validation, latest
        assert all(0.0 <= v < 0.69 for k, v in validation.items() if "logloss" in k)


RELEASED = """
    import os, time
    i = 0
    while not os.path.exists(os.environ["RELEASE"]):
        print(f"tick {i}", flush=True)
        i += 1
        time.sleep(0.05)
    print("released")
    open(os.path.join(os.environ["SM_MODEL_DIR"], "m.txt"), "w").write(str(i))
"""


def _texts(client: my.Client, job_id: str) -> list[str]:
    lines, after = [], 0
    while page := client.jobs.logs(job_id, after_seq=after).lines:
        lines += page
        after = page[-1].seq
    assert [x.seq for x in lines] == list(range(1, len(lines) + 1))  # no gap, no duplicate
    return [x.text for x in lines]


def test_a_job_outlives_its_control_plane(home: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    with my.connect(home=home) as client:
        job = estimator(
            client, tmp_path, RELEASED, backend="ray", environment={"RELEASE": str(release)}
        ).fit(wait=False)
        wait_for(lambda: len(_texts(client, job.id)) >= 3)
    # The runtime and its controller are gone; so is the Ray driver, killed outright.
    for pid in driver_pids().values():
        os.kill(pid, signal.SIGKILL)

    with my.connect(home=home) as client:
        running = client.jobs.get(job.id)
        assert running.state == "Running"
        seen = len(_texts(client, job.id))
        # Following the log starts this process's controller; tailing resumes where it was.
        fresh = list(itertools.islice(client.jobs.follow(job.id, after_seq=seen), 4))
        assert [x.text for x in fresh] == [f"tick {i}" for i in range(seen, seen + 4)]
        release.write_text("go")
        done = client.jobs.wait(job.id, logs=False)
        assert done.state == "Completed" and len(done.attempt_list) == 1
        texts = _texts(client, job.id)
        assert texts[-1] == "released"
        assert texts[:-1] == [f"tick {i}" for i in range(len(texts) - 1)]
        assert done.model is not None


def test_an_attempt_whose_actor_dies_is_lost_and_retried(home: Path, tmp_path: Path) -> None:
    script = """
        import os, time
        print("attempt", os.environ["MODELYARD_JOB_ATTEMPT"], flush=True)
        if os.environ["MODELYARD_JOB_ATTEMPT"] == "1":
            time.sleep(120)
    """
    with my.connect(home=home) as client:
        job = estimator(client, tmp_path, script, backend="ray", max_attempts=2).fit(wait=False)
        wait_for(lambda: _texts(client, job.id) == ["attempt 1"])
        (name,) = client.jobs.get(job.id).attempt_list[0].backend_ref["actors"]
        ray.kill(ray.get_actor(name, namespace=NAMESPACE))
        done = client.jobs.wait(job.id, logs=False)
        assert done.state == "Completed"
        first, _ = done.attempt_list
        assert first.state == "Failed" and first.failure_reason is not None
        assert "Ray actor" in first.failure_reason
        assert _texts(client, job.id) == ["attempt 1", "attempt 2"]


def test_a_launch_waits_for_the_ray_driver_being_replaced(
    backend: ComputeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Ray driver process died just before a launch (the cluster restarted, the process
    was killed) and no call waits for its replacement to start (the waits are 0 here), so
    the launch meets "still connecting": it waits for the new driver and starts the
    attempt, instead of failing it as a spawn error. A launch whose wait runs out (a
    cluster that stays unreachable) fails with the reason."""
    assert isinstance(backend, RayBackend)
    monkeypatch.setattr(ray_backend_module, "FIRST_START_WAIT_S", 0.0)
    monkeypatch.setattr(ray_backend_module, "RESTART_WAIT_S", 0.0)
    backend.wait_for_driver(120.0)
    for pid in driver_pids().values():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not driver_pids())
    plan = _plan(backend, tmp_path)
    (tmp_path / "go").touch()
    backend.connect_timeout_s = 0.0
    with pytest.raises(LaunchFailed, match="still connecting to the Ray cluster at 'auto'"):
        backend.launch(plan)
    backend.connect_timeout_s = RayBackend.connect_timeout_s
    ref = backend.launch(plan)
    poll = _ended(backend, plan, ref)
    assert poll.exit is not None and poll.exit.succeeded, poll.exit
    assert backend.collect(plan, ref, succeeded=True).model is not None


class _LateKills:
    """``ray`` for the driver, whose ``kill`` lands 0.5 s after the call returns: Ray's own
    kill is asynchronous (the request is sent, the actor dies a moment later); here the
    moment is long enough that a caller racing it always loses."""

    def __init__(self) -> None:
        self.timers: list[threading.Timer] = []

    def __getattr__(self, name: str) -> object:
        return getattr(ray, name)

    def kill(self, actor: object, *, no_restart: bool = True) -> None:
        timer = threading.Timer(0.5, ray.kill, (actor,), {"no_restart": no_restart})
        self.timers.append(timer)
        timer.start()


@pytest.fixture
def late_kills(monkeypatch: pytest.MonkeyPatch) -> Iterator[_LateKills]:
    late = _LateKills()
    monkeypatch.setattr(ray_driver_module, "ray", late)
    yield late
    for timer in late.timers:
        timer.join()


def test_a_launch_again_replaces_the_actors_an_interrupted_launch_left(
    backend: ComputeBackend, tmp_path: Path, late_kills: _LateKills
) -> None:
    """A launch interrupted by a crash leaves the attempt's actors; the launch again kills
    them and creates actors of the same names, which Ray refuses while the old ones are
    still registered: the launch waits until the names are free."""
    assert isinstance(backend, RayBackend)
    driver = RayDriver(backend.artifacts.url, backend.tag, backend._options())
    plan = _plan(backend, tmp_path)
    first = driver.launch(plan)
    (old,) = [ray.get_actor(name, namespace=NAMESPACE) for name in first["actors"]]
    again = driver.launch(plan)
    assert again["actors"] == first["actors"]
    (new,) = [ray.get_actor(name, namespace=NAMESPACE) for name in again["actors"]]
    assert new._actor_id != old._actor_id
    (tmp_path / "go").touch()
    poll = wait_for(lambda: (p := driver.poll(plan, again)).state == "exited" and p, timeout=60)
    assert poll.exit is not None and poll.exit.succeeded, poll.exit


def test_a_killed_replica_actor_has_left_when_the_kill_returns(
    backend: ComputeBackend, tmp_path: Path, late_kills: _LateKills
) -> None:
    """``replica_kill`` returns once the name is free, so the replica's launch again (the
    same name after an interrupted launch) is not refused as taken."""
    assert isinstance(backend, RayBackend)
    driver = RayDriver(backend.artifacts.url, backend.tag, backend._options())
    name = f"modelyard.{backend.tag}.ep.r-1.1"
    task = ReplicaTask("r-1", 1, "churn", 1, "0" * 64, "model.tar.gz", backend.artifacts.url)
    actor = (
        ray_driver_module.remote_class(ReplicaWorker)
        .options(name=name, namespace=NAMESPACE, lifetime="detached", num_cpus=0)
        .remote(task)
    )
    assert ray.get(actor.poll.remote(), timeout=60) is None  # created, no server started
    driver.replica_kill(name)
    with pytest.raises(ValueError, match="Failed to look up actor"):
        ray.get_actor(name, namespace=NAMESPACE)
    assert driver.replica_poll(name)[0] == "gone"
