"""Autoscaling: target tracking on in-flight requests, scale to zero with cold starts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest
from epkit import ROWS
from test_endpoints import Load, wait_for

from conftest import Plane
from modelyard.client.sdk import Client
from modelyard.endpoints.autoscaling import Autoscaler
from modelyard.endpoints.plane import plane_for
from modelyard.endpoints.schemas import Autoscaling, Endpoint
from modelyard.errors import InvalidInput, NotFound
from modelyard.flavors import save_model

BODY = json.dumps(ROWS)


def slow_version(client: Client, folder: Path, name: str = "slow", load_s: float = 0.0) -> int:
    """An approved ``python`` model whose predict sleeps 0.2 s, then echoes its input."""
    code = folder / f"slow-{len(list(folder.glob('slow-*')))}"
    code.mkdir(parents=True)
    (code / "handler.py").write_text(
        textwrap.dedent(
            """
            import time

            def load(model_dir):
                time.sleep(LOAD_S)
                return None

            def predict(model, data):
                time.sleep(0.2)
                return data
            """
        ).replace("LOAD_S", repr(load_s))
    )
    path = code.parent / f"{code.name}-saved"
    save_model(code / "handler.py", path, flavor="python")
    version = client.models.register(name, path=path, flavor="python").version
    client.models.approve(name, version, reason="test")
    return version


def ready(ep: Endpoint) -> int:
    return sum(1 for r in ep.replicas if r.state == "Ready")


# --- the decisions, without processes ---------------------------------------------------


def test_target_tracking_decisions_respect_bounds_window_and_cooldowns() -> None:
    spec = Autoscaling(
        min_replicas=1,
        max_replicas=3,
        target_in_flight=2,
        window_s=10,
        scale_out_cooldown_s=5,
        scale_in_cooldown_s=30,
    )
    a = Autoscaler()
    # Within the scale-out cooldown of the first sample nothing changes.
    assert a.decide("v", spec, 1, 8, None, now=100.0) is None
    out = a.decide("v", spec, 1, 8, None, now=105.0)
    assert out is not None and out.replicas == 3  # ceil(8 / 2) = 4, clamped to max 3
    a.changed("v", 105.0)
    # Load gone: the mean over the window decays; scale-in waits 30 s after the change.
    assert a.decide("v", spec, 3, 0, 105.0, now=120.0) is None
    down = a.decide("v", spec, 3, 0, 105.0, now=135.0)
    assert down is not None and down.replicas == 1 and "scale in 3 -> 1" in down.reason
    # Exactly the target per replica keeps the count (no off-by-one from rounding).
    b = Autoscaler()
    flat = Autoscaling(min_replicas=1, max_replicas=4, target_in_flight=2, scale_in_cooldown_s=0)
    assert b.decide("w", flat, 2, 4, None, now=0.0) is None


def test_scale_to_zero_decisions() -> None:
    spec = Autoscaling(min_replicas=0, max_replicas=2, target_in_flight=1, idle_seconds=60)
    a = Autoscaler()
    assert a.decide("v", spec, 1, 0, None, now=0.0) is None
    # A replica still starting counts as activity: idle time starts after it.
    assert a.decide("v", spec, 1, 0, None, now=20.0, starting=True) is None
    assert a.decide("v", spec, 1, 0, None, now=79.0) is None
    assert a.decide("v", spec, 1, 0, 30.0, now=80.0) is None  # a request 50 s ago
    idle = a.decide("v", spec, 1, 0, 30.0, now=91.0)
    assert idle is not None and idle.replicas == 0
    a.changed("v", 91.0)
    assert a.decide("v", spec, 0, 0, 30.0, now=500.0) is None  # idle at zero stays there
    woken = a.decide("v", spec, 0, 1, 30.0, now=501.0)  # a held request: at once
    assert woken is not None and woken.replicas == 1
    # Without min_replicas 0 an idle variant keeps its minimum.
    keep = Autoscaling(min_replicas=1, max_replicas=2, idle_seconds=1, scale_in_cooldown_s=0)
    assert Autoscaler().decide("k", keep, 1, 0, None, now=1000.0) is None


@pytest.mark.parametrize(
    "autoscaling",
    [
        {"min_replicas": 3, "max_replicas": 2},
        {"max_replicas": 0},
        {"max_replicas": 99},
        {"target_in_flight": 0},
        {"idle_seconds": -1},
        {"cold_start_timeout_s": 10_000},
        {"min_replicas": "many"},
    ],
)
def test_bad_autoscaling_is_refused_and_creates_nothing(
    plane: Plane, autoscaling: dict[str, object]
) -> None:
    c = plane.client
    with pytest.raises(InvalidInput):
        c.endpoints.create(
            "bad-as", [{"model": "slow", "version": "1", "autoscaling": autoscaling}]
        )
    with pytest.raises(NotFound):
        c.endpoints.describe("bad-as")


# --- with real replicas -----------------------------------------------------------------


def test_scales_out_under_concurrent_load_and_back_in_when_it_stops(plane: Plane) -> None:
    c = plane.client
    v = slow_version(c, plane.folder)
    autoscaling = {
        "min_replicas": 1,
        "max_replicas": 3,
        "target_in_flight": 1,
        "window_s": 1,
        "scale_out_cooldown_s": 0.5,
        "scale_in_cooldown_s": 1,
    }
    c.endpoints.create("auto", [{"model": "slow", "version": v, "autoscaling": autoscaling}])
    ep = c.endpoints.wait("auto")
    assert ep.variants[0].replicas == 1 and ep.variants[0].autoscaling is not None

    def desired() -> int:
        return c.endpoints.describe("auto").variants[0].replicas

    with Load(plane.server.url, "auto", clients=4) as load:
        wait_for(lambda: desired() > 1, 30, "a scale-out")
        wait_for(lambda: ready(c.endpoints.describe("auto")) > 1, 30, "a second ready replica")
    assert load.results and all(status == 200 for status, _, _ in load.results)
    scaled = [e for e in c.endpoints.events("auto").events if e.kind == "scaled"]
    assert scaled and scaled[0].detail["before"] == 1 and scaled[0].detail["after"] > 1
    assert "scale out" in c.endpoints.describe("auto").variants[0].last_scaling or len(scaled) > 1

    # Load gone: back to the minimum, the surplus replicas drained and stopped.
    wait_for(lambda: desired() == 1, 30, "a scale-in")
    wait_for(lambda: len(c.endpoints.describe("auto").replicas) == 1, 30, "surplus stopped")
    last = c.endpoints.describe("auto").variants[0]
    assert "scale in" in last.last_scaling and last.last_scaling_at is not None
    c.endpoints.delete("auto", wait=True)


def test_scales_to_zero_when_idle_and_holds_the_next_request_through_a_cold_start(
    plane: Plane,
) -> None:
    c = plane.client
    v = slow_version(c, plane.folder)
    autoscaling = {"min_replicas": 0, "max_replicas": 2, "idle_seconds": 1}
    c.endpoints.create("zero", [{"model": "slow", "version": v, "autoscaling": autoscaling}])
    c.endpoints.wait("zero")
    warm = httpx.post(f"{plane.server.url}/endpoints/zero/invocations", content=BODY)
    assert warm.status_code == 200 and "x-modelyard-cold-start-ms" not in warm.headers

    # Idle: every replica stops, the endpoint stays InService with no replica.
    wait_for(lambda: c.endpoints.describe("zero").variants[0].replicas == 0, 30, "zero")
    wait_for(lambda: not c.endpoints.describe("zero").replicas, 30, "replicas stopped")
    ep = c.endpoints.describe("zero")
    assert ep.status == "InService" and "scaled to zero" in ep.variants[0].last_scaling

    # The next request waits for a replica, then is answered, with the cold-start time.
    cold = httpx.post(f"{plane.server.url}/endpoints/zero/invocations", content=BODY, timeout=90)
    assert cold.status_code == 200, cold.text
    assert cold.json()["predictions"] == ROWS
    assert float(cold.headers["x-modelyard-cold-start-ms"]) > 0
    wait_for(
        lambda: c.endpoints.describe("zero").variants[0].last_cold_start_ms is not None,
        10,
        "the cold start recorded",
    )
    kinds = [e.kind for e in c.endpoints.events("zero").events]
    assert "cold_start" in kinds and kinds.count("scaled") >= 2
    # Warm again: no cold-start header.
    again = httpx.post(f"{plane.server.url}/endpoints/zero/invocations", content=BODY)
    assert again.status_code == 200 and "x-modelyard-cold-start-ms" not in again.headers

    # The same through the embedded router (the SDK without a server).
    wait_for(lambda: not c.endpoints.describe("zero").replicas, 30, "zero again")
    answer = plane_for(plane.runtime).router.invoke_sync(
        "zero", BODY.encode(), content_type="application/json"
    )
    assert answer.status == 200 and float(answer.headers["x-modelyard-cold-start-ms"]) > 0
    c.endpoints.delete("zero", wait=True)


def test_a_cold_start_longer_than_its_timeout_is_a_clear_503_and_the_replica_still_starts(
    plane: Plane,
) -> None:
    c = plane.client
    v = slow_version(c, plane.folder, load_s=3.0)  # loading takes 3 s, far above the wait
    autoscaling = {"min_replicas": 0, "idle_seconds": 1, "cold_start_timeout_s": 0.5}
    c.endpoints.create("late", [{"model": "slow", "version": v, "autoscaling": autoscaling}])
    c.endpoints.wait("late")
    wait_for(lambda: not c.endpoints.describe("late").replicas, 30, "zero")
    refused = httpx.post(f"{plane.server.url}/endpoints/late/invocations", content=BODY)
    assert refused.status_code == 503
    assert "cold_start_timeout_s" in refused.json()["message"]
    # The held request still woke the variant up: a replica starts and serves.
    wait_for(lambda: ready(c.endpoints.describe("late")) == 1, 60, "the replica")
    served = httpx.post(f"{plane.server.url}/endpoints/late/invocations", content=BODY)
    assert served.status_code == 200
    c.endpoints.delete("late", wait=True)


def test_cli_and_deploy_take_autoscaling_and_describe_shows_it(plane: Plane) -> None:
    from epkit import sklearn_version
    from typer.testing import CliRunner

    from modelyard.cli.main import app

    runner = CliRunner()
    c = plane.client
    v = sklearn_version(c, plane.folder)
    url = plane.server.url

    def run(*args: str) -> str:
        result = runner.invoke(app, ["--url", url, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    for bad, message in [
        (["--min-replicas", "3", "--max-replicas", "2"], "must not exceed max_replicas"),
        (["--autoscaling", "[1]"], "must be a JSON object"),
        (["--autoscaling", "{"], "not valid JSON"),
    ]:
        args = ["endpoints", "create", "cli-as", "--model", "churn", "--version", str(v), *bad]
        result = runner.invoke(app, ["--url", url, *args])
        assert result.exit_code == 1 and message in result.output, result.output
    with pytest.raises(NotFound):
        c.endpoints.describe("cli-as")

    created = json.loads(
        run(
            "--json",
            "endpoints",
            "create",
            "cli-as",
            "--model",
            "churn",
            "--version",
            str(v),
            "--max-replicas",
            "2",
            "--target-in-flight",
            "3",
            "--autoscaling",
            '{"scale_in_cooldown_s": 7}',
        )
    )
    scaling = created["variants"][0]["autoscaling"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 2)
    assert (scaling["target_in_flight"], scaling["scale_in_cooldown_s"]) == (3, 7)
    assert "autoscaling: 1-2 replicas, target 3 in flight" in run("endpoints", "describe", "cli-as")
    run("endpoints", "delete", "cli-as")

    ep = c.endpoints.deploy(
        "churn", v, "deployed-as", autoscaling={"min_replicas": 0, "idle_seconds": 600}
    )
    assert ep.variants[0].autoscaling is not None
    assert ep.variants[0].autoscaling.min_replicas == 0 and ep.variants[0].replicas == 1
    c.endpoints.wait("deployed-as")
    # Redeploying the variant without autoscaling keeps its autoscaling.
    again = c.endpoints.deploy("churn", v, "deployed-as")
    assert again.variants[0].autoscaling is not None
    c.endpoints.delete("deployed-as", wait=True)
