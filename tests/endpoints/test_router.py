"""The router's forwarding rules, through both ways in (``invoke`` and ``invoke_sync``).

The replicas are an in-memory HTTP transport, so these run in milliseconds and can make a
replica refuse a connection or fail on demand; the end-to-end behaviour over real model
servers is in test_endpoints.py and test_autoscaling.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import orjson
import pytest

from modelyard.endpoints.router import (
    COLD_START_HEADER,
    MAX_SHADOW_IN_FLIGHT,
    VARIANT_HEADER,
    VERSION_HEADER,
    Answer,
    Route,
    Router,
    Table,
)
from modelyard.errors import ServiceUnavailable

Handler = Callable[[httpx.Request], httpx.Response]
Invoke = Callable[..., Answer]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "application/json"}, content=b"[1]")


def table(*routes: Route, cold_wait_s: float | None = None) -> Table:
    weights = tuple((r.variant_id, 1.0) for r in routes if not r.shadow)
    return Table("ep", {r.variant_id: r for r in routes}, weights, None, 0.0, cold_wait_s)


def router(*tables: Table) -> Router:
    """A router whose database reads give ``tables`` in turn (the last one from then on)."""
    r = Router(None, seed=1, ttl_s=0.0)  # type: ignore[arg-type]  # no database: _load below
    given = list(tables)
    r._load = lambda name: given.pop(0) if len(given) > 1 else given[0]  # type: ignore[method-assign]
    return r


def invoke_sync(r: Router, handler: Handler, path: str = "/invocations") -> Answer:
    r._sync = httpx.Client(transport=httpx.MockTransport(handler))
    try:
        return r.invoke_sync(
            "ep", b"{}", content_type="application/json", request_id="req-1", path=path
        )
    finally:
        r.close()  # waits for the shadow copies


def invoke_async(r: Router, handler: Handler, path: str = "/invocations") -> Answer:
    async def main() -> Answer:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        r._async[asyncio.get_running_loop()] = client
        try:
            return await r.invoke(
                "ep", b"{}", content_type="application/json", request_id="req-1", path=path
            )
        finally:
            while r._shadow_tasks:  # let the shadow copies finish
                await asyncio.sleep(0.001)
            await client.aclose()

    return asyncio.run(main())


BOTH = pytest.mark.parametrize("invoke", [invoke_sync, invoke_async], ids=["sync", "async"])
A = Route("va", "a", "churn", 3, False, (("r1", "http://r1"), ("r2", "http://r2")))
S = Route("vs", "s", "churn", 4, True, (("r3", "http://r3"),))


@BOTH
def test_a_replica_that_refuses_the_connection_is_skipped(invoke: Invoke) -> None:
    r = router(table(A))
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "r1":
            raise httpx.ConnectError("refused", request=request)
        return ok(request)

    answer = invoke(r, handler)
    assert answer.status == 200 and answer.body == b"[1]"
    assert answer.headers[VARIANT_HEADER] == "a"
    assert answer.headers[VERSION_HEADER] == "churn:3"
    assert hosts == ["r1", "r2"]
    assert r.inflight(["r1", "r2"]) == 0
    stats = r.snapshot(["va"])["va"]
    assert (stats.requests, stats.errors) == (1, 0)


@BOTH
def test_no_replica_left_after_refusals_is_service_unavailable(invoke: Invoke) -> None:
    r = router(table(A))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ServiceUnavailable, match="no ready replica"):
        invoke(r, refuse)
    assert r.inflight(["r1", "r2"]) == 0


@BOTH
def test_a_failing_replica_is_a_502_in_modelyards_error_shape(invoke: Invoke) -> None:
    r = router(table(A))

    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("too slow", request=request)

    answer = invoke(r, time_out)
    assert answer.status == 502
    body = orjson.loads(answer.body)
    assert body["code"] == "bad_gateway" and body["request_id"] == "req-1"
    assert body["message"].startswith("the replica failed: ReadTimeout")
    stats = r.snapshot(["va"])["va"]
    assert (stats.requests, stats.errors) == (1, 1)
    assert r.inflight(["r1", "r2"]) == 0


@BOTH
def test_a_shadow_gets_a_copy_and_its_failure_never_reaches_the_caller(invoke: Invoke) -> None:
    r = router(table(A, S))
    seen: list[tuple[str, str, bytes, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(
            (
                request.url.host,
                request.url.path,
                request.content,
                request.headers.get("x-request-id"),
            )
        )
        if request.url.host == "r3":
            raise httpx.ConnectError("refused", request=request)  # a shadow is not retried
        return ok(request)

    answer = invoke(r, handler)
    assert answer.status == 200 and answer.headers[VARIANT_HEADER] == "a"
    assert sorted(seen) == [
        ("r1", "/invocations", b"{}", "req-1"),
        ("r3", "/invocations", b"{}", "req-1"),
    ]
    stats = r.snapshot(["va", "vs"])
    assert (stats["va"].requests, stats["va"].errors) == (1, 0)
    assert (stats["vs"].requests, stats["vs"].errors) == (1, 1)
    assert r.inflight(["r1", "r3"]) == 0 and r._shadows == 0


@BOTH
def test_shadow_copies_past_the_in_flight_limit_are_dropped(invoke: Invoke) -> None:
    r = router(table(A, S))
    r._shadows = MAX_SHADOW_IN_FLIGHT  # as if that many copies were still running
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return ok(request)

    assert invoke(r, handler).status == 200
    assert hosts == ["r1"] and r._shadows == MAX_SHADOW_IN_FLIGHT
    assert "vs" not in r.snapshot(["vs"])


@BOTH
def test_a_request_held_through_a_cold_start_says_how_long_it_waited(invoke: Invoke) -> None:
    cold = Route("va", "a", "churn", 3, False, ())
    r = router(table(cold, cold_wait_s=30), table(cold, cold_wait_s=30), table(A, cold_wait_s=30))
    answer = invoke(r, ok)
    assert answer.status == 200
    assert float(answer.headers[COLD_START_HEADER]) > 0
    assert r.take_cold_starts().keys() == {"va"}
    assert r.waiting("ep") == 0


@BOTH
def test_a_cold_start_past_its_timeout_is_service_unavailable(invoke: Invoke) -> None:
    r = router(table(Route("va", "a", "churn", 3, False, ()), cold_wait_s=0.01))
    with pytest.raises(ServiceUnavailable, match="cold_start_timeout_s"):
        invoke(r, ok)
    assert r.waiting("ep") == 0 and r.take_cold_starts() == {}


@BOTH
def test_open_inference_requests_go_to_the_replicas_own_model(invoke: Invoke) -> None:
    r = router(table(A))
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return ok(request)

    answer = invoke(r, handler, "/v2/infer")
    assert answer.status == 200 and paths == ["/v2/models/churn/infer"]
