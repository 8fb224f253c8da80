"""Endpoints with real model-server replicas on loopback: routing, rollouts, recovery."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from epkit import (
    ROWS,
    UpServer,
    failing_version,
    sklearn_version,
    stop_all_replicas,
    unloadable_version,
)

from conftest import Plane
from modelyard.client.sdk import Client, connect
from modelyard.client.transport import EmbeddedTransport
from modelyard.endpoints.plane import plane_for
from modelyard.errors import NotFound
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from testkit import LiveServer, make_settings

BODY = json.dumps(ROWS)


def wait_for(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Load:
    """A few clients calling the router in a loop; every answer is recorded."""

    def __init__(self, url: str, name: str, clients: int = 4) -> None:
        self.url = f"{url}/endpoints/{name}/invocations"
        self.results: list[tuple[int, str | None, str | None]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                try:
                    r = http.post(
                        self.url, content=BODY, headers={"content-type": "application/json"}
                    )
                    item = (
                        r.status_code,
                        r.headers.get("x-modelyard-variant"),
                        r.headers.get("x-modelyard-model-version"),
                    )
                except httpx.HTTPError as exc:
                    item = (0, None, repr(exc))
                with self._lock:
                    self.results.append(item)
                time.sleep(0.005)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def count(self) -> int:
        with self._lock:
            return len(self.results)


def test_create_invoke_headers_describe_and_delete(plane: Plane) -> None:
    c = plane.client
    v = sklearn_version(c, plane.folder)
    created = c.endpoints.create("churn-ep", [{"model": "churn", "version": v}])
    assert created.status == "Creating"
    assert [(x.name, x.model, x.version) for x in created.variants] == [("primary", "churn", v)]
    ep = c.endpoints.wait("churn-ep")
    assert [r.state for r in ep.replicas] == ["Ready"]

    r = httpx.post(
        f"{plane.server.url}/endpoints/churn-ep/invocations",
        content=BODY,
        headers={"content-type": "application/json", "x-request-id": "mine-1"},
    )
    assert r.status_code == 200
    # One request id, the caller's (the router does not copy the replica's as well).
    assert r.headers.get_list("x-request-id") == ["mine-1"]
    assert r.headers["x-modelyard-variant"] == "primary"
    assert r.headers["x-modelyard-model-version"] == f"churn:{v}"
    assert len(r.json()["predictions"]) == 2
    # The same through the SDK, and the OIP v2 route.
    assert len(c.endpoints.predict("churn-ep", ROWS)["predictions"]) == 2
    v2 = httpx.post(
        f"{plane.server.url}/endpoints/churn-ep/v2/models/any/infer",
        json={"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP64", "data": ROWS}]},
    )
    assert v2.status_code == 200, v2.text
    assert v2.headers["x-modelyard-model-version"] == f"churn:{v}"
    # A model's own 4xx comes back as it is, with the variant that answered.
    bad = c.endpoints.invoke("churn-ep", "not json", content_type="application/json")
    assert bad.status == 400 and bad.variant == "primary"

    # The endpoint's own address serves the same router.
    wait_for(lambda: c.endpoints.describe("churn-ep").port is not None, 30, "its own port")
    own = f"http://127.0.0.1:{c.endpoints.describe('churn-ep').port}"
    assert httpx.get(f"{own}/ping").status_code == 200
    direct = httpx.post(f"{own}/invocations", content=BODY, headers={"x-request-id": "mine-2"})
    assert direct.status_code == 200 and direct.headers["x-modelyard-variant"] == "primary"
    assert direct.headers.get_list("x-request-id") == ["mine-2"]
    assert httpx.post(f"{own}/nothing", content=BODY).status_code == 404

    described = c.endpoints.describe("churn-ep")
    stats = described.stats[described.variants[0].id]
    assert stats.requests >= 4 and stats.p99_latency_ms is not None
    assert [e.kind for e in c.endpoints.events("churn-ep").events][:1] == ["created"]

    c.endpoints.delete("churn-ep", wait=True)
    with pytest.raises(NotFound):
        c.endpoints.describe("churn-ep")
    gone = httpx.post(f"{plane.server.url}/endpoints/churn-ep/invocations", content=BODY)
    assert gone.status_code == 404
    # Its processes are gone too.
    wait_for(lambda: not any((plane.home / "endpoints" / "replicas").iterdir()), 30, "cleanup")


def test_weights_split_traffic_and_shadow_answers_are_never_returned(plane: Plane) -> None:
    c = plane.client
    v1 = sklearn_version(c, plane.folder)
    v2 = sklearn_version(c, plane.folder)
    unapproved = sklearn_version(c, plane.folder, approve=False)
    c.endpoints.create(
        "split",
        [
            {"name": "a", "model": "churn", "version": v1, "weight": 3},
            {"name": "b", "model": "churn", "version": v2, "weight": 1},
            # A shadow may run a version that is not approved; it never answers callers.
            {"name": "s", "model": "churn", "version": unapproved, "shadow": True},
        ],
    )
    ep = c.endpoints.wait("split")
    assert sorted(ep.traffic.values()) == [0.25, 0.75]
    router = plane_for(plane.runtime).router
    router.rng = random.Random(1234)
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=plane.server.url) as http:
        for _ in range(400):
            r = http.post("/endpoints/split/invocations", content=BODY)
            assert r.status_code == 200
            seen[r.headers["x-modelyard-variant"]] += 1
    assert set(seen) == {"a", "b"}
    # 400 draws at p = 0.75: the share lies within 0.75 +- 0.08 (> 3.5 sigma).
    assert 0.67 < seen["a"] / 400 < 0.83
    shadow = next(v for v in ep.variants if v.name == "s")
    wait_for(
        lambda: c.endpoints.describe("split").stats[shadow.id].requests >= 300,
        30,
        "the shadow's copies",
    )


def _version_of(load: Load, i: int) -> str | None:
    return load.results[i][2]


def test_blue_green_update_under_load_has_zero_failed_requests(plane: Plane) -> None:
    c = plane.client
    v1 = sklearn_version(c, plane.folder)
    v2 = sklearn_version(c, plane.folder)
    c.endpoints.create("bg", [{"model": "churn", "version": v1, "replicas": 2}])
    c.endpoints.wait("bg")
    with Load(plane.server.url, "bg") as load:
        wait_for(lambda: load.count() >= 20, 30, "load")
        c.endpoints.update(
            "bg",
            [{"model": "churn", "version": v2, "replicas": 2}],
            strategy={
                "type": "blue_green",
                "bake_seconds": 2,
                "alarms": [{"metric": "error_rate", "threshold": 0.01}],
            },
        )
        rollout = c.endpoints.wait_rollout("bg", timeout=120)
        assert rollout.state == "Completed", rollout.reason
        # Keep the load on until the old replicas have drained and stopped.
        new_id = rollout.to_variants[0].id
        wait_for(
            lambda: all(r.variant_id == new_id for r in c.endpoints.describe("bg").replicas),
            60,
            "the old replicas to stop",
        )
        after = load.count()
        wait_for(lambda: load.count() >= after + 20, 30, "load after the rollout")
    failures = [r for r in load.results if r[0] != 200]
    assert failures == []
    versions = [r[2] for r in load.results]
    assert {f"churn:{v1}", f"churn:{v2}"} <= set(versions)
    assert set(versions[after:]) == {f"churn:{v2}"}
    assert c.endpoints.describe("bg").status == "InService"


def test_canary_of_a_failing_model_is_rolled_back_with_the_reason(plane: Plane) -> None:
    c = plane.client
    good = sklearn_version(c, plane.folder)
    bad = failing_version(c, plane.folder)
    c.endpoints.create("canary", [{"model": "churn", "version": good}])
    c.endpoints.wait("canary")
    with Load(plane.server.url, "canary") as load:
        c.endpoints.update(
            "canary",
            [{"model": "churn", "version": bad}],
            strategy={
                "type": "canary",
                "canary_percent": 50,
                "bake_seconds": 60,
                "alarms": [{"metric": "error_rate", "threshold": 0.05, "min_requests": 5}],
            },
        )
        rollout = c.endpoints.wait_rollout("canary", timeout=120)
        rolled_back_at = load.count()
        wait_for(lambda: load.count() >= rolled_back_at + 30, 30, "load after the rollback")
    assert rollout.state == "RolledBack"
    assert "error_rate" in rollout.reason and "threshold 0.05" in rollout.reason
    ep = c.endpoints.describe("canary")
    assert ep.status == "InService"
    assert [(v.version, ep.traffic[v.id]) for v in ep.variants] == [(good, 1.0)]
    # The canary did serve (and fail) some requests; after the rollback only the old
    # version answers, and it answers every request. (Requests chosen before the switch
    # may still finish on the canary, so skip a short margin.)
    assert any(r[2] == f"churn:{bad}" and r[0] == 500 for r in load.results[:rolled_back_at])
    tail = load.results[rolled_back_at + 8 :]
    assert tail and all(r[0] == 200 and r[2] == f"churn:{good}" for r in tail)
    kinds = [e.kind for e in c.endpoints.events("canary").events]
    assert "rollout_rolled_back" in kinds
    wait_for(lambda: len(c.endpoints.describe("canary").replicas) == 1, 60, "canary stopped")


def test_a_crashed_replica_is_restarted(plane: Plane) -> None:
    c = plane.client
    v = sklearn_version(c, plane.folder)
    c.endpoints.create("crash", [{"model": "churn", "version": v}])
    ep = c.endpoints.wait("crash")
    before = ep.replicas[0]
    assert before.pid is not None
    os.kill(before.pid, signal.SIGKILL)

    def restarted() -> bool:
        r = c.endpoints.describe("crash").replicas[0]
        return r.state == "Ready" and r.restarts == 1 and r.pid != before.pid

    wait_for(restarted, 60, "the replica to come back")
    after = c.endpoints.describe("crash").replicas[0]
    assert after.id == before.id and "signal 9" in after.message
    assert c.endpoints.invoke("crash", BODY).status == 200
    assert "replica_restarted" in [e.kind for e in c.endpoints.events("crash").events]


def test_endpoints_come_back_as_they_were_after_a_control_plane_crash(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    try:
        first = UpServer(tmp_path / "home", tmp_path / "up.log")
        c = connect(first.url)
        v = sklearn_version(c, tmp_path)
        c.endpoints.create("durable", [{"model": "churn", "version": v, "replicas": 2}])
        ep = c.endpoints.wait("durable")
        wait_for(lambda: c.endpoints.describe("durable").port is not None, 30, "its own port")
        ep = c.endpoints.describe("durable")
        c.close()
        kept, killed = ep.replicas
        first.stop(signal.SIGKILL)  # the control plane dies; its replicas keep running
        assert kept.pid is not None and killed.pid is not None
        os.kill(killed.pid, signal.SIGKILL)  # and one dies while nobody watches

        second = Runtime(settings)
        second.start_background()
        try:
            with LiveServer(second) as server:

                def reconciled() -> bool:
                    reps = {r.id: r for r in remote.endpoints.describe("durable").replicas}
                    return all(r.state == "Ready" for r in reps.values()) and (
                        reps[killed.id].restarts == 1
                    )

                remote = connect(server.url)
                wait_for(reconciled, 60, "reconciliation")
                reps = {r.id: r for r in remote.endpoints.describe("durable").replicas}
                # The live replica was re-attached, not restarted; the dead one restarted.
                assert (reps[kept.id].pid, reps[kept.id].port, reps[kept.id].restarts) == (
                    kept.pid,
                    kept.port,
                    0,
                )
                assert reps[killed.id].pid != killed.pid
                # The endpoint's own address comes back on the same port.
                wait_for(lambda: remote.endpoints.describe("durable").port == ep.port, 30, "port")
                assert ep.port is not None
                assert (
                    httpx.post(f"http://127.0.0.1:{ep.port}/invocations", content=BODY).status_code
                    == 200
                )
                answer = remote.endpoints.invoke("durable", BODY)
                assert answer.status == 200 and answer.model_version == f"churn:{v}"
                assert remote.endpoints.describe("durable").status == "InService"
                remote.close()
        finally:
            second.close()
    finally:
        stop_all_replicas(tmp_path / "home")


def test_capture_writes_sampled_json_lines_files_that_are_listed(plane: Plane) -> None:
    c = plane.client
    v = sklearn_version(c, plane.folder)
    both = [
        {"model": "churn", "version": v},
        {"name": "s", "model": "churn", "version": v, "shadow": True},
    ]
    c.endpoints.create("cap", both, capture={"percent": 100, "max_batch": 4, "flush_seconds": 0.5})
    c.endpoints.wait("cap")
    for _ in range(10):
        assert c.endpoints.invoke("cap", BODY).status == 200
    assert c.endpoints.invoke("cap", b"\xff\xfe", content_type="application/x-npy").status == 400
    capturer = plane_for(plane.runtime).capturer

    def captured() -> int:
        capturer.flush()
        return sum(f.count for f in c.endpoints.capture_files("cap").files)

    # Each request twice: the answer returned, and the shadow's copy.
    wait_for(lambda: captured() >= 22, 30, "capture files")
    listed = c.endpoints.capture_files("cap")
    assert sum(f.count for f in listed.files) == 22 and listed.dropped == 0
    assert max(f.count for f in listed.files) <= 4
    events: list[dict[str, Any]] = []
    for f in listed.files:
        data = plane.runtime.artifacts.read_bytes(f.digest)
        events.extend(json.loads(line) for line in data.decode().splitlines())
    assert len({e["event_id"] for e in events}) == 22
    assert Counter((e["variant"], e["shadow"]) for e in events) == {
        ("primary", False): 11,
        ("s", True): 11,
    }
    first = next(e for e in events if not e["shadow"])
    assert first["endpoint"] == "cap"
    assert (first["model"], first["model_version"]) == ("churn", v)
    assert first["request"] == {
        "content_type": "application/json",
        "encoding": "text",
        "data": BODY,
    }
    assert first["response"]["status"] == 200 and "predictions" in first["response"]["data"]
    assert first["latency_ms"] > 0 and dt.datetime.fromisoformat(first["time"]).tzinfo
    binary = [e for e in events if e["request"]["encoding"] == "base64"]
    assert len(binary) == 2 and {e["response"]["status"] for e in binary} == {400}

    # Sampling at 0 % captures nothing, and the change applies without a rollout.
    c.endpoints.update("cap", both, capture={"percent": 0})

    def shadow_answers() -> int:
        described = c.endpoints.describe("cap")
        (shadow,) = [v for v in described.variants if v.name == "s"]
        stats = described.stats.get(shadow.id)
        return stats.requests if stats is not None else 0

    shadowed = shadow_answers()
    for _ in range(5):
        c.endpoints.invoke("cap", BODY)
    # The shadow copies have been answered (a copy is counted when its answer is recorded,
    # just before it would be captured), so one captured late cannot be missed.
    wait_for(lambda: shadow_answers() >= shadowed + 5, 30, "the shadow copies' answers")
    assert captured() == 22


def test_an_update_whose_model_cannot_load_is_rolled_back(plane: Plane) -> None:
    c = plane.client
    good = sklearn_version(c, plane.folder)
    broken = unloadable_version(c, plane.folder)
    c.endpoints.create("broken", [{"model": "churn", "version": good}])
    c.endpoints.wait("broken")
    c.endpoints.update("broken", [{"model": "churn", "version": broken}])
    rollout = c.endpoints.wait_rollout("broken", timeout=180)
    assert rollout.state == "RolledBack"
    assert "could not start" in rollout.reason and "cannot be loaded" in rollout.reason
    ep = c.endpoints.describe("broken")
    assert ep.status == "InService" and [v.version for v in ep.variants] == [good]
    answer = c.endpoints.invoke("broken", BODY)
    assert answer.status == 200 and answer.model_version == f"churn:{good}"


def test_a_rollout_in_progress_resumes_after_a_control_plane_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    try:
        first = Runtime(settings)
        c = Client(EmbeddedTransport(first, local_principal()))
        v1 = sklearn_version(c, tmp_path)
        v2 = sklearn_version(c, tmp_path)
        c.endpoints.create("resume", [{"model": "churn", "version": v1}])
        c.endpoints.wait("resume")
        c.endpoints.update(
            "resume",
            [{"model": "churn", "version": v2}],
            strategy={"type": "linear", "linear_steps": 2, "bake_seconds": 3},
        )

        def baking() -> bool:
            ro = c.endpoints.describe("resume").rollout
            return ro is not None and ro.phase == "baking"

        wait_for(baking, 90, "the first step")
        first.close()  # the control plane stops in the middle of the rollout
        second = Runtime(settings)
        try:
            c2 = Client(EmbeddedTransport(second, local_principal()))
            rollout = c2.endpoints.wait_rollout("resume", timeout=120)
            assert rollout.state == "Completed" and rollout.step == 1
            # The first control plane stopped its replicas; this one started them again.
            wait_for(
                lambda: [r.state for r in c2.endpoints.describe("resume").replicas] == ["Ready"],
                60,
                "the replica to start again",
            )
            ep = c2.endpoints.describe("resume")
            assert [(v.version, ep.traffic[v.id]) for v in ep.variants] == [(v2, 1.0)]
            shifts = [
                e for e in c2.endpoints.events("resume").events if e.kind == "traffic_shifted"
            ]
            assert len(shifts) == 2
            assert c2.endpoints.invoke("resume", BODY).model_version == f"churn:{v2}"
        finally:
            second.close()
    finally:
        stop_all_replicas(tmp_path / "home")


def test_a_stopped_control_plane_stops_its_replicas_and_the_next_one_starts_them(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    try:
        first = Runtime(settings)
        c = Client(EmbeddedTransport(first, local_principal()))
        v = sklearn_version(c, tmp_path)
        c.endpoints.create("stops", [{"model": "churn", "version": v}])
        before = c.endpoints.wait("stops").replicas[0]
        assert before.pid is not None and psutil.pid_exists(before.pid)
        first.close()
        assert not psutil.pid_exists(before.pid)  # gone when close() returns
        second = Runtime(settings)
        try:
            c2 = Client(EmbeddedTransport(second, local_principal()))
            # An embedded invocation runs the controller, which starts the replica again;
            # the call waits for it rather than answering 503 at once.
            assert c2.endpoints.invoke("stops", BODY).status == 200
            after = c2.endpoints.describe("stops").replicas[0]
            assert after.state == "Ready" and after.pid != before.pid
            assert (after.id, after.restarts) == (before.id, 0)
            assert after.message == "stopped with the control plane"
        finally:
            second.close()
    finally:
        stop_all_replicas(tmp_path / "home")
