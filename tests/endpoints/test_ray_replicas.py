"""Endpoint replicas as Ray actors (placement ``ray``) on a real local Ray cluster.

One test walks the whole life of such an endpoint (Ray startup is slow on a small machine,
so the steps share one endpoint): two replicas become ready as named Ray actors, the
router answers through them, a killed actor is replaced, a control-plane restart
re-attaches the actors instead of starting new ones, and delete stops them. Then: a
replica Ray cannot place fails the endpoint with the reason; a Ray Client address
(``ray://``) serves, its launch waiting out the driver's start; with a second node joined,
a variant's replicas run one per node; the CLI refuses an unknown placement backend.
Every test ends with no actor of its home left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import ray
from epkit import ROWS, sklearn_version
from typer.testing import CliRunner

from conftest import Plane
from fixtures.ray_cluster import (
    RayCluster,
    _free_ports,
    find_ray,
    kill_named_actors,
    node_port_flags,
)
from modelyard.cli.main import app
from modelyard.client.sdk import connect
from modelyard.compute.backends import ray as ray_backend_module
from modelyard.compute.backends.ray import RayBackend
from modelyard.compute.backends.ray_driver import NAMESPACE
from modelyard.endpoints.plane import plane_for
from modelyard.endpoints.ray_replicas import RayReplicas
from modelyard.endpoints.replica_auth import SECRET_HEADER
from modelyard.endpoints.schemas import Placement
from modelyard.runtime import Runtime
from testkit import LiveServer, make_settings

BODY = json.dumps(ROWS)
runner = CliRunner()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _actors(prefix: str) -> set[str]:
    """Live named actors of this home's replicas."""
    return {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == NAMESPACE and a["name"].startswith(prefix)
    }


@pytest.fixture
def prefix(ray_backend_env: RayCluster, tmp_path: Path) -> Iterator[str]:
    """This test's actor-name prefix; whatever actors are left are killed at the end."""
    tag = RayBackend("ray", None, tmp_path / "home").tag  # type: ignore[arg-type]
    value = f"modelyard.{tag}.ep."
    yield value
    kill_named_actors(NAMESPACE, value)


def test_placement_is_validated() -> None:
    assert Placement().backend == "local"
    assert Placement(backend="ray://head:10001", num_cpus=0.5).num_cpus == 0.5
    with pytest.raises(ValueError, match="placement backend must be 'local' or a Ray URL"):
        Placement(backend="kubernetes")


def test_cli_refuses_an_unknown_placement(plane: Plane) -> None:
    args = ["--url", plane.server.url, "endpoints", "create", "x", "--model", "churn"]
    result = runner.invoke(app, [*args, "--version", "1", "--placement", "kubernetes"])
    assert result.exit_code == 1
    assert "placement backend must be 'local' or a Ray URL" in result.output, result.output


def test_replicas_as_ray_actors_live_restart_reattach_and_stop(prefix: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = Runtime(settings)
    first.start_background()
    second: Runtime | None = None
    try:
        c = connect(home=tmp_path / "home")
        v = sklearn_version(c, tmp_path)
        # Through the registry's deploy (the SDK's shortest path).
        c.models.deploy(
            "churn", v, "on-ray", replicas=2, placement={"backend": "ray", "num_cpus": 0.5}
        )
        ep = c.endpoints.wait("on-ray", timeout=90)
        assert ep.status == "InService", ep.message
        assert ep.variants[0].placement is not None
        assert ep.variants[0].placement.backend == "ray"
        assert [r.state for r in ep.replicas] == ["Ready", "Ready"]
        # Each replica is a named detached actor; attempt 1 of each.
        names = {f"{prefix}{r.id}.1" for r in ep.replicas}
        assert _actors(prefix) == names
        node_ip = ray.util.get_node_ip_address()
        assert {r.host for r in ep.replicas} == {node_ip}

        with LiveServer(first) as server:
            r = httpx.post(
                f"{server.url}/endpoints/on-ray/invocations",
                content=BODY,
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 200, r.text
            assert r.headers["x-modelyard-variant"] == "primary"
            assert r.headers["x-modelyard-model-version"] == f"churn:{v}"
            assert len(r.json()["predictions"]) == 2
            shown = runner.invoke(app, ["--url", server.url, "endpoints", "describe", "on-ray"])
            assert shown.exit_code == 0, shown.output
            assert "placement: ray, 0.5 CPU per replica" in shown.output

        # Killing a replica's actor kills its server; the controller starts attempt 2.
        victim, other = ep.replicas
        ray.kill(ray.get_actor(f"{prefix}{victim.id}.1", namespace=NAMESPACE))

        def restarted() -> bool:
            reps = {x.id: x for x in c.endpoints.describe("on-ray").replicas}
            return reps[victim.id].state == "Ready" and reps[victim.id].restarts == 1

        wait_for(restarted, 90, "the killed replica to come back")
        assert _actors(prefix) == {f"{prefix}{victim.id}.2", f"{prefix}{other.id}.1"}
        events = [e for e in c.endpoints.events("on-ray").events if e.kind == "replica_restarted"]
        assert events and "Ray actor" in events[0].message
        before = {x.id: (x.pid, x.host, x.port) for x in c.endpoints.describe("on-ray").replicas}
        c.close()

        # A control-plane restart re-attaches the actors by name: nothing new starts.
        first.close()
        assert len(_actors(prefix)) == 2  # the replicas outlive the control plane
        second = Runtime(settings)
        second.start_background()
        c = connect(home=tmp_path / "home")
        wait_for(lambda: c.endpoints.describe("on-ray").status == "InService", 30, "service")
        after = c.endpoints.describe("on-ray")
        assert {x.id: (x.pid, x.host, x.port) for x in after.replicas} == before
        assert [x.restarts for x in after.replicas if x.id == other.id] == [0]
        assert _actors(prefix) == {f"{prefix}{victim.id}.2", f"{prefix}{other.id}.1"}
        assert len(c.endpoints.predict("on-ray", ROWS)["predictions"]) == 2

        # Delete stops the servers and kills the actors.
        c.endpoints.delete("on-ray", wait=True, timeout=90)
        assert _actors(prefix) == set()
        c.close()
    finally:
        (second or first).close()
        if second is not None:
            first.close()


def test_replicas_placed_through_a_ray_client_address(
    prefix: str, ray_backend_env: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ray://host:port`` placement (Ray Client: a control plane outside the cluster).

    No call waits for a Ray driver process being started here, so the replica's launch
    meets "still connecting" (its driver starts, or replaces the one an earlier test
    killed; a Ray Client connection takes seconds and can fail once): the launch waits
    for the driver instead of counting that as a failed start (three were the endpoint's
    end within a second)."""
    monkeypatch.setattr(ray_backend_module, "FIRST_START_WAIT_S", 0.0)
    monkeypatch.setattr(ray_backend_module, "RESTART_WAIT_S", 0.0)
    runtime = Runtime(make_settings(tmp_path))
    runtime.start_background()
    try:
        c = connect(home=tmp_path / "home")
        v = sklearn_version(c, tmp_path)
        placement = {"backend": ray_backend_env.client_address, "num_cpus": 0.5}
        c.endpoints.create("client", [{"model": "churn", "version": v, "placement": placement}])
        ep = c.endpoints.wait("client", timeout=120)
        assert ep.status == "InService", ep.message
        assert ep.variants[0].placement is not None
        assert ep.variants[0].placement.backend == ray_backend_env.client_address
        [replica] = ep.replicas
        assert _actors(prefix) == {f"{prefix}{replica.id}.1"}
        assert len(c.endpoints.predict("client", ROWS)["predictions"]) == 2
        c.endpoints.delete("client", wait=True, timeout=60)
        assert _actors(prefix) == set()
        c.close()
    finally:
        runtime.close()


def test_a_replica_ray_cannot_place_fails_the_endpoint_with_the_reason(
    prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RayReplicas, "start_timeout_s", 3.0)
    runtime = Runtime(make_settings(tmp_path))
    runtime.start_background()
    try:
        c = connect(home=tmp_path / "home")
        v = sklearn_version(c, tmp_path)
        placement = {"backend": "ray", "num_cpus": 64}  # the test cluster has 2
        c.endpoints.create("too-big", [{"model": "churn", "version": v, "placement": placement}])
        wait_for(lambda: c.endpoints.describe("too-big").status == "Failed", 60, "Failed")
        ep = c.endpoints.describe("too-big")
        assert "did not start within 3 s (64 CPU wanted" in ep.message, ep.message
        assert [r.state for r in ep.replicas] == ["Failed"]
        assert _actors(prefix) == set()  # each timed-out actor was killed
        c.endpoints.delete("too-big", wait=True, timeout=60)
        c.close()
    finally:
        runtime.close()


@pytest.fixture
def second_node(ray_backend_env: RayCluster, tmp_path: Path) -> Iterator[str]:
    """A second 1-CPU node joined to the session's cluster (its Ray node id); stopped after.

    It has an address of its own, 127.0.0.2 (all of 127/8 is loopback on Linux), as a node
    of a real cluster would: its replicas serve there, not on the control plane's address.
    """
    ray_cli = find_ray()
    assert ray_cli is not None
    before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    log = open(tmp_path / "node2.log", "ab")  # noqa: SIM115 (closed below)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env["MODELYARD_RAY_WORKDIR"] = str(tmp_path / "node2-work")
    env.pop("RAY_ADDRESS", None)
    process = subprocess.Popen(
        [
            ray_cli,
            "start",
            f"--address={ray_backend_env.address}",
            "--block",
            "--node-ip-address=127.0.0.2",
            "--num-cpus=1",
            "--num-gpus=0",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
            *node_port_flags(_free_ports(6)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        added: set[str] = set()

        def joined() -> bool:
            added.update({n["NodeID"] for n in ray.nodes() if n["Alive"]} - before)
            if process.poll() is not None:
                raise AssertionError((tmp_path / "node2.log").read_text()[-2000:])
            return bool(added)

        wait_for(joined, 60, "the second node to join")
        yield added.pop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        time.sleep(2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        log.close()


def test_a_variants_replicas_spread_over_the_nodes(
    prefix: str,
    s3_store_url: str,
    second_node: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As on a real cluster: the artifacts are in S3 (each node fetches the model from the
    store, not from the control plane's disk) and the nodes have different addresses."""
    monkeypatch.setenv("MODELYARD_ARTIFACTS", s3_store_url)
    runtime = Runtime(make_settings(tmp_path))
    runtime.start_background()
    try:
        c = connect(home=tmp_path / "home")
        v = sklearn_version(c, tmp_path)
        placement = {"backend": "ray", "num_cpus": 0.5}
        c.endpoints.create(
            "spread", [{"model": "churn", "version": v, "replicas": 2, "placement": placement}]
        )
        ep = c.endpoints.wait("spread", timeout=90)
        assert ep.status == "InService", ep.message
        nodes = set()
        address = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
        for r in ep.replicas:
            actor = ray.get_actor(f"{prefix}{r.id}.1", namespace=NAMESPACE)
            info = ray.get(actor.start.remote(), timeout=30)  # answers what it started
            assert (info["host"], info["port"]) == (r.host, r.port)
            assert r.host == address[info["node_id"]]  # each serves on its node's address
            nodes.add(info["node_id"])
        assert len(nodes) == 2 and second_node in nodes  # one replica on each node
        assert address[second_node] == "127.0.0.2"
        # The router routes to both addresses, and each replica answers there.
        table = plane_for(runtime).router.table("spread")
        urls = sorted(url for route in table.routes.values() for _, url in route.replicas)
        assert {httpx.URL(u).host for u in urls} == {r.host for r in ep.replicas}
        assert len(urls) == 2 and "127.0.0.2" in {httpx.URL(u).host for u in urls}
        for route in table.routes.values():
            for rid, url in route.replicas:
                headers = {"content-type": "application/json"}
                # only with its secret: a replica answers nobody but the router
                refused = httpx.post(f"{url}/invocations", content=BODY, headers=headers)
                assert refused.status_code == 403
                headers[SECRET_HEADER] = table.secrets[rid]
                answer = httpx.post(f"{url}/invocations", content=BODY, headers=headers, timeout=30)
                assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
        assert len(c.endpoints.predict("spread", ROWS)["predictions"]) == 2
        c.endpoints.delete("spread", wait=True, timeout=60)
        assert _actors(prefix) == set()
        c.close()
    finally:
        runtime.close()
