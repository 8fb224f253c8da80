"""The router: splits an endpoint's traffic over its variants' ready replicas.

For each request it picks a variant by weighted random choice over the live traffic
weights (variants without a ready replica are skipped), then one of that variant's ready
replicas round-robin, forwards the body with its ``Content-Type``/``Accept``, and answers
with the replica's status and body plus ``X-Modelyard-Variant`` and
``X-Modelyard-Model-Version: <model>:<version>``. A replica that refuses the connection
(it just stopped) is skipped and another ready one is tried, so a request never fails
because a replica went away between two routing-table refreshes.

The routing table of an endpoint (weights, ready replicas, capture settings) is read
from the database and cached for ``ttl_s``; the controller in the same process
invalidates it whenever it changes an endpoint, so weight shifts take effect at once.

Shadow variants get a copy of each request after the answer is chosen; their answers
are counted and captured, never returned. The router keeps per-variant counters
(requests, 5xx errors, a latency histogram) in memory: rollouts read them to evaluate
alarms, ``describe`` shows them. They are per process and start at zero.

For the autoscaler the router also keeps, per process, the requests in flight to each
replica, the time of each variant's last request and the requests it holds while an
endpoint scaled to zero has no ready replica: such a request waits (up to the variant's
``cold_start_timeout_s``) for the controller to start one, and its answer carries
``X-Modelyard-Cold-Start-Ms`` (arrival to a ready replica); the controller records it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import orjson
from sqlalchemy import select

from modelyard.core.db import Database
from modelyard.core.ids import new_id
from modelyard.endpoints.capture import Capturer, RawBody
from modelyard.endpoints.replica_auth import SECRET_HEADER, ReplicaKeys
from modelyard.endpoints.schemas import Capture
from modelyard.endpoints.store import EndpointRow, ReplicaRow
from modelyard.errors import NotFound, ServiceUnavailable

# Latency histogram bucket upper bounds in ms: 0.1 ms to ~2 min, 25 % apart.
LATENCY_BOUNDS_MS = [0.1 * 1.25**i for i in range(64)]
MAX_SHADOW_IN_FLIGHT = 64
FORWARD_TIMEOUT_S = 60.0
VARIANT_HEADER = "x-modelyard-variant"
VERSION_HEADER = "x-modelyard-model-version"
COLD_START_HEADER = "x-modelyard-cold-start-ms"
COLD_POLL_S = 0.05

_routers: weakref.WeakSet[Router] = weakref.WeakSet()


@dataclass
class Counters:
    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    def add(self, other: Counters) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]

    def minus(self, other: Counters) -> Counters:
        return Counters(
            self.requests - other.requests,
            self.errors - other.errors,
            [a - b for a, b in zip(self.buckets, other.buckets, strict=True)],
        )

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile, in ms."""
        total = sum(self.buckets)
        if total == 0:
            return None
        rank = math.ceil(q * total)
        seen = 0
        for i, count in enumerate(self.buckets):
            seen += count
            if seen >= rank:
                return LATENCY_BOUNDS_MS[min(i, len(LATENCY_BOUNDS_MS) - 1)]
        return LATENCY_BOUNDS_MS[-1]


def _bucket(latency_ms: float) -> int:
    if latency_ms <= LATENCY_BOUNDS_MS[0]:
        return 0
    i = math.ceil(math.log(latency_ms / LATENCY_BOUNDS_MS[0], 1.25))
    return min(i, len(LATENCY_BOUNDS_MS))


def stats_of(variant_ids: Iterable[str]) -> dict[str, Counters]:
    """The counters of every router in this process, summed per variant."""
    wanted = list(variant_ids)
    out = {v: Counters() for v in wanted}
    for router in list(_routers):
        for vid, counters in router.snapshot(wanted).items():
            out[vid].add(counters)
    return out


def inflight_of(replica_ids: Iterable[str]) -> int:
    """Requests in flight to these replicas, over every router of this process."""
    ids = list(replica_ids)
    return sum(router.inflight(ids) for router in list(_routers))


def last_request(variant_id: str) -> float | None:
    """``time.monotonic()`` of the variant's latest request in this process, if any."""
    seen = [t for router in list(_routers) if (t := router.seen(variant_id)) is not None]
    return max(seen) if seen else None


def held(endpoint: str) -> int:
    """Requests of this process waiting for a replica of a scaled-to-zero endpoint."""
    return sum(router.waiting(endpoint) for router in list(_routers))


def take_cold_starts(variant_ids: Iterable[str] | None = None) -> dict[str, float]:
    """Cold-start times (ms) by variant id seen since the last call (of these variants,
    if given); the latest wins."""
    wanted = None if variant_ids is None else set(variant_ids)
    out: dict[str, float] = {}
    for router in list(_routers):
        out.update(router.take_cold_starts(wanted))
    return out


def invalidate_routers() -> None:
    """Every router of this process re-reads its tables (an operation changed one)."""
    for router in list(_routers):
        router.invalidate()


@dataclass(frozen=True)
class Route:
    variant_id: str
    variant: str
    model: str
    version: int
    shadow: bool
    replicas: tuple[tuple[str, str], ...]  # (replica id, base URL)


@dataclass(frozen=True)
class Table:
    endpoint: str
    routes: dict[str, Route]
    weights: tuple[tuple[str, float], ...]
    capture: Capture | None
    loaded: float
    cold_wait_s: float | None = None  # set when a traffic-taking variant scales to zero
    # Each replica's secret by replica id (modelyard.endpoints.replica_auth), sent with
    # every request to it; the router's clients never set that header themselves.
    secrets: Mapping[str, str] = field(default_factory=dict)

    def ready(self) -> bool:
        return any(r.replicas for r in self.routes.values() if not r.shadow)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class _Call:
    """One request (or one shadow copy of it) as the router forwards it.

    The router's rules read and update it: :meth:`Router._target` picks where it goes,
    :meth:`Router._settle` turns the replica's response into the answer and records it.
    The sync and async paths only make the HTTP call between the two.
    """

    table: Table
    path: str
    body: bytes
    content_type: str
    accept: str | None
    request_id: str | None
    sampled: bool  # captured (with its shadow copies)
    arrived: float = 0.0  # time.monotonic() at arrival
    ready: float | None = None  # time.monotonic() when a cold start gave it a replica
    shadow: bool = False  # a copy for a shadow variant: route and rid are fixed
    route: Route | None = None  # where the latest attempt went
    rid: str = ""
    url: str = ""
    t0: float = 0.0  # time.perf_counter() when the latest attempt was sent
    refused: set[str] | None = None  # replicas that refused the connection

    def shadow_copy(self, route: Route, rid: str, url: str) -> _Call:
        """The same request for a shadow replica: never retried, no cold start of its own."""
        return _Call(
            self.table,
            self.path,
            self.body,
            self.content_type,
            self.accept,
            self.request_id,
            self.sampled,
            shadow=True,
            route=route,
            rid=rid,
            url=url,
        )

    def headers(self) -> dict[str, str]:
        h = {"content-type": self.content_type}
        if self.accept:
            h["accept"] = self.accept
        if self.request_id:
            h["x-request-id"] = self.request_id
        secret = self.table.secrets.get(self.rid)
        if secret:
            h[SECRET_HEADER] = secret
        return h


def _error(status: int, message: str, request_id: str | None) -> Answer:
    # The shape of every modelyard error body (the replica failed, not the caller).
    body = orjson.dumps({"code": "bad_gateway", "message": message, "request_id": request_id})
    return Answer(status, {"content-type": "application/json"}, body)


class Router:
    """Routes invocations of every endpoint of one database (thread-safe).

    Every rule (choosing the replica, retrying a refused connection, headers, counters,
    cold-start recording, capture, shadow copies, error answers) is plain Python shared by
    the two ways in: :meth:`invoke` (async, the server's routes) and :meth:`invoke_sync`
    (the embedded SDK). Those differ only in how they wait: the HTTP call in
    ``_send_async``/``_send_sync``, the table load and sleep while a cold start holds the
    request, and how a shadow copy runs (a task or a pool thread).
    """

    def __init__(
        self,
        db: Database,
        capturer: Capturer | None = None,
        *,
        keys: ReplicaKeys | None = None,
        ttl_s: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self.db = db
        self.capturer = capturer
        self.keys = keys
        self.ttl_s = ttl_s
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._tables: dict[str, Table] = {}
        self._rr: dict[str, int] = {}
        self._inflight: dict[str, int] = {}
        self._counters: dict[str, Counters] = {}
        self._sync: httpx.Client | None = None
        self._async: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._shadow_pool: ThreadPoolExecutor | None = None
        self._shadows = 0
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._seen: dict[str, float] = {}
        self._waiting: dict[str, int] = {}
        self._cold: dict[str, float] = {}
        _routers.add(self)

    # -- routing table ---------------------------------------------------------------------

    def invalidate(self, endpoint: str | None = None) -> None:
        with self._lock:
            if endpoint is None:
                self._tables.clear()
            else:
                self._tables.pop(endpoint, None)

    def _load(self, name: str) -> Table:
        with self.db.transaction(write=False) as session:
            row = session.scalar(select(EndpointRow).where(EndpointRow.name == name))
            if row is None or row.status == "Deleting":
                raise NotFound(f"no endpoint named {name!r}")
            replicas = list(
                session.scalars(
                    select(ReplicaRow)
                    .where(ReplicaRow.endpoint_id == row.id, ReplicaRow.state == "Ready")
                    .order_by(ReplicaRow.id)
                )
            )
            variants = list(row.variants)
            traffic = dict(row.traffic)
            capture = Capture.model_validate(row.capture) if row.capture else None
        by_variant: dict[str, list[tuple[str, str]]] = {}
        for r in replicas:
            if r.port is not None:
                by_variant.setdefault(r.variant_id, []).append((r.id, f"http://{r.host}:{r.port}"))
        routes = {
            v["id"]: Route(
                variant_id=v["id"],
                variant=v["name"],
                model=v["model"],
                version=int(v["version"]),
                shadow=bool(v["shadow"]),
                replicas=tuple(by_variant.get(v["id"], [])),
            )
            for v in variants
        }
        weights = tuple(
            (vid, float(w)) for vid, w in sorted(traffic.items()) if w > 0 and vid in routes
        )
        waits = [
            float(v["autoscaling"]["cold_start_timeout_s"])
            for v in variants
            if v.get("autoscaling")
            and int(v["autoscaling"]["min_replicas"]) == 0
            and not v["shadow"]
            and traffic.get(v["id"], 0) > 0
        ]
        keys = self.keys
        secrets = {r.id: keys.secret(r.id, r.attempt) for r in replicas} if keys else {}
        table = Table(
            name,
            routes,
            weights,
            capture,
            time.monotonic(),
            max(waits) if waits else None,
            secrets,
        )
        with self._lock:
            self._tables[name] = table
        return table

    def _cached(self, name: str) -> Table | None:
        with self._lock:
            table = self._tables.get(name)
        if table is not None and time.monotonic() - table.loaded < self.ttl_s:
            return table
        return None

    def table(self, name: str) -> Table:
        return self._cached(name) or self._load(name)

    async def table_async(self, name: str) -> Table:
        cached = self._cached(name)
        if cached is not None:
            return cached
        return await anyio.to_thread.run_sync(self._load, name)

    # -- choosing --------------------------------------------------------------------------

    def choose(
        self, table: Table, exclude: frozenset[str] | set[str] = frozenset()
    ) -> tuple[Route, str, str]:
        """(route, replica id, URL): a variant by weight, then a replica round-robin."""
        candidates = [
            (vid, w)
            for vid, w in table.weights
            if any(rid not in exclude for rid, _ in table.routes[vid].replicas)
        ]
        if not candidates:
            # Nothing ready where the weights point: any ready non-shadow replica will do.
            candidates = [
                (vid, 1.0)
                for vid, route in table.routes.items()
                if not route.shadow and any(rid not in exclude for rid, _ in route.replicas)
            ]
        if not candidates:
            raise ServiceUnavailable(f"endpoint {table.endpoint!r} has no ready replica")
        with self._lock:
            x = self.rng.random() * sum(w for _, w in candidates)
            chosen = candidates[-1][0]
            for vid, w in candidates:
                if x < w:
                    chosen = vid
                    break
                x -= w
            route = table.routes[chosen]
            replicas = [r for r in route.replicas if r[0] not in exclude]
            n = self._rr.get(chosen, 0)
            self._rr[chosen] = n + 1
            rid, url = replicas[n % len(replicas)]
            self._inflight[rid] = self._inflight.get(rid, 0) + 1
            self._seen[chosen] = time.monotonic()
        return route, rid, url

    def _done(self, route: Route, rid: str | None, status: int, latency_ms: float) -> None:
        with self._lock:
            if rid is not None:
                self._inflight[rid] = self._inflight.get(rid, 1) - 1
            self._seen[route.variant_id] = time.monotonic()
            c = self._counters.setdefault(route.variant_id, Counters())
            c.requests += 1
            if status >= 500:
                c.errors += 1
            c.buckets[_bucket(latency_ms)] += 1

    def inflight(self, replica_ids: Iterable[str]) -> int:
        with self._lock:
            return sum(self._inflight.get(r, 0) for r in replica_ids)

    def seen(self, variant_id: str) -> float | None:
        with self._lock:
            return self._seen.get(variant_id)

    def waiting(self, endpoint: str) -> int:
        with self._lock:
            return self._waiting.get(endpoint, 0)

    def take_cold_starts(self, variant_ids: set[str] | None = None) -> dict[str, float]:
        with self._lock:
            if variant_ids is None:
                out, self._cold = self._cold, {}
                return out
            return {v: self._cold.pop(v) for v in list(self._cold) if v in variant_ids}

    # -- scale to zero: hold a request until a replica is ready ----------------------------

    def _hold(self, endpoint: str, delta: int) -> None:
        with self._lock:
            self._waiting[endpoint] = self._waiting.get(endpoint, 0) + delta
            if self._waiting[endpoint] <= 0:
                del self._waiting[endpoint]

    @contextmanager
    def _held(self, table: Table) -> Iterator[float]:
        """Count a request waiting on a cold endpoint; gives its deadline (monotonic)."""
        assert table.cold_wait_s is not None
        self._hold(table.endpoint, 1)
        try:
            yield time.monotonic() + table.cold_wait_s
        finally:
            self._hold(table.endpoint, -1)

    @staticmethod
    def _still_cold(table: Table, deadline: float) -> bool:
        """False once a replica is ready; ServiceUnavailable past the deadline."""
        if table.ready():
            return False
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"endpoint {table.endpoint!r} scaled to zero and no replica became ready "
                f"within {table.cold_wait_s:g} s (its cold_start_timeout_s); try again"
            )
        return True

    async def _wait_ready_async(self, table: Table) -> Table:
        with self._held(table) as deadline:
            while self._still_cold(table, deadline):
                await asyncio.sleep(COLD_POLL_S)
                table = await anyio.to_thread.run_sync(self._load, table.endpoint)
        return table

    def _wait_ready_sync(self, table: Table) -> Table:
        with self._held(table) as deadline:
            while self._still_cold(table, deadline):
                time.sleep(COLD_POLL_S)
                table = self._load(table.endpoint)
        return table

    def _cold_started(self, route: Route, answer: Answer, arrived: float, ready: float) -> None:
        ms = round((ready - arrived) * 1000.0, 1)
        answer.headers[COLD_START_HEADER] = f"{ms:g}"
        with self._lock:
            self._cold[route.variant_id] = ms

    def snapshot(self, variant_ids: Iterable[str]) -> dict[str, Counters]:
        with self._lock:
            out = {}
            for vid in variant_ids:
                c = self._counters.get(vid)
                if c is not None:
                    out[vid] = Counters(c.requests, c.errors, list(c.buckets))
            return out

    def _sampled(self, table: Table) -> bool:
        cap = table.capture
        if cap is None or not cap.enabled or self.capturer is None or cap.percent <= 0:
            return False
        with self._lock:
            return self.rng.random() * 100.0 < cap.percent

    def _answer(self, route: Route, response: httpx.Response) -> Answer:
        # Not the replica's X-Request-Id: it is the id this request was forwarded with, and
        # the front that took the request (server middleware, endpoint address) adds it.
        headers = {
            k: v for k, v in response.headers.items() if k in ("content-type", "x-modelyard-model")
        }
        headers[VARIANT_HEADER] = route.variant
        headers[VERSION_HEADER] = f"{route.model}:{route.version}"
        return Answer(response.status_code, headers, response.content)

    def _capture(self, call: _Call, route: Route, answer: Answer, latency_ms: float) -> None:
        table = call.table
        if self.capturer is None or table.capture is None:
            return
        now = dt.datetime.now(dt.UTC)
        event = {
            "event_id": new_id("evt"),
            "time": now.isoformat(),
            "endpoint": table.endpoint,
            "variant": route.variant,
            "model": route.model,
            "model_version": route.version,
            "shadow": route.shadow,
            "latency_ms": round(latency_ms, 3),
            # Raw here; the capture writer encodes the bodies off the request path.
            "request": RawBody.of(call.content_type, call.body),
            "response": RawBody.of(
                answer.headers.get("content-type", ""), answer.body, answer.status
            ),
        }
        self.capturer.put(
            table.endpoint,
            event,
            max_batch=table.capture.max_batch,
            flush_seconds=table.capture.flush_seconds,
        )

    def _target(self, call: _Call) -> str:
        """The URL of the call's next attempt; counts it in flight and starts its clock."""
        if call.shadow:
            with self._lock:
                self._inflight[call.rid] = self._inflight.get(call.rid, 0) + 1
        else:
            call.route, call.rid, call.url = self.choose(call.table, call.refused or frozenset())
        call.t0 = time.perf_counter()
        assert call.route is not None
        return call.url + self._path(call.route, call)

    def _settle(self, call: _Call, result: httpx.Response | httpx.HTTPError) -> Answer | None:
        """The answer to the call's latest attempt, recorded (counters, cold start, capture).

        None when the replica refused the connection (it just stopped): the caller tries
        another ready one. A shadow copy is never retried.
        """
        route = call.route
        assert route is not None
        if isinstance(result, httpx.Response):
            answer = self._answer(route, result)
        elif isinstance(result, httpx.ConnectError) and not call.shadow:
            self._release(call.rid)
            if call.refused is None:
                call.refused = set()
            call.refused.add(call.rid)
            return None
        else:
            which = "shadow replica" if call.shadow else "replica"
            answer = _error(502, f"the {which} failed: {result!r}", call.request_id)
        latency = (time.perf_counter() - call.t0) * 1000.0
        self._done(route, call.rid, answer.status, latency)
        if call.ready is not None:
            self._cold_started(route, answer, call.arrived, call.ready)
        if call.sampled:
            self._capture(call, route, answer, latency)
        return answer

    def _shadow_calls(self, call: _Call) -> list[_Call]:
        """Copies of the call for the table's shadow variants (one replica each, round-robin).

        At most ``MAX_SHADOW_IN_FLIGHT`` copies run at once in this router; past that a
        copy is dropped. Each copy returned is counted until :meth:`_shadow_finished`.
        """
        out: list[_Call] = []
        with self._lock:
            for route in call.table.routes.values():
                if not (route.shadow and route.replicas):
                    continue
                n = self._rr.get(route.variant_id, 0)
                self._rr[route.variant_id] = n + 1
                if self._shadows >= MAX_SHADOW_IN_FLIGHT:
                    continue
                self._shadows += 1
                rid, url = route.replicas[n % len(route.replicas)]
                out.append(call.shadow_copy(route, rid, url))
        return out

    def _shadow_finished(self) -> None:
        with self._lock:
            self._shadows -= 1

    # -- async (the control plane's HTTP route) --------------------------------------------

    def _client_async(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None:
                limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
                client = httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S, limits=limits)
                self._async[loop] = client
            return client

    async def invoke(
        self,
        endpoint: str,
        body: bytes,
        *,
        content_type: str,
        accept: str | None = None,
        request_id: str | None = None,
        path: str = "/invocations",
    ) -> Answer:
        """Forward one request; NotFound/ServiceUnavailable when it cannot be routed."""
        arrived = time.monotonic()
        table = await self.table_async(endpoint)
        ready = None
        if table.cold_wait_s is not None and not table.ready():
            table = await self._wait_ready_async(table)
            ready = time.monotonic()
        sampled = self._sampled(table)
        call = _Call(table, path, body, content_type, accept, request_id, sampled, arrived, ready)
        answer = await self._send_async(call)
        for shadow in self._shadow_calls(call):
            task = asyncio.create_task(self._shadow_async(shadow))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return answer

    async def _send_async(self, call: _Call) -> Answer:
        client = self._client_async()
        while True:
            url = self._target(call)
            try:
                response = await client.post(url, content=call.body, headers=call.headers())
            except httpx.HTTPError as exc:
                answer = self._settle(call, exc)
            else:
                answer = self._settle(call, response)
            if answer is not None:
                return answer

    async def _shadow_async(self, call: _Call) -> None:
        try:
            await self._send_async(call)
        finally:
            self._shadow_finished()

    # -- sync (the embedded SDK) -----------------------------------------------------------

    def _client_sync(self) -> httpx.Client:
        with self._lock:
            if self._sync is None:
                self._sync = httpx.Client(timeout=FORWARD_TIMEOUT_S)
            return self._sync

    def invoke_sync(
        self,
        endpoint: str,
        body: bytes,
        *,
        content_type: str,
        accept: str | None = None,
        request_id: str | None = None,
        path: str = "/invocations",
    ) -> Answer:
        """:meth:`invoke` for callers without an event loop (the embedded client)."""
        arrived = time.monotonic()
        table = self.table(endpoint)
        ready = None
        if table.cold_wait_s is not None and not table.ready():
            table = self._wait_ready_sync(table)
            ready = time.monotonic()
        sampled = self._sampled(table)
        call = _Call(table, path, body, content_type, accept, request_id, sampled, arrived, ready)
        answer = self._send_sync(call)
        shadows = self._shadow_calls(call)
        if shadows:
            pool = self._pool()
            for shadow in shadows:
                pool.submit(self._shadow_sync, shadow)
        return answer

    def _send_sync(self, call: _Call) -> Answer:
        client = self._client_sync()
        while True:
            url = self._target(call)
            try:
                response = client.post(url, content=call.body, headers=call.headers())
            except httpx.HTTPError as exc:
                answer = self._settle(call, exc)
            else:
                answer = self._settle(call, response)
            if answer is not None:
                return answer

    def _shadow_sync(self, call: _Call) -> None:
        try:
            self._send_sync(call)
        finally:
            self._shadow_finished()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._shadow_pool is None:
                self._shadow_pool = ThreadPoolExecutor(2, thread_name_prefix="modelyard-shadow")
            return self._shadow_pool

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _path(route: Route, call: _Call) -> str:
        if call.path == "/invocations":
            return "/invocations"
        # Open Inference Protocol: the replica serves its own model's name.
        return f"/v2/models/{route.model}/infer"

    def _release(self, rid: str) -> None:
        with self._lock:
            self._inflight[rid] = self._inflight.get(rid, 1) - 1

    def close(self) -> None:
        if self._shadow_pool is not None:
            self._shadow_pool.shutdown(wait=True)
            self._shadow_pool = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        clients, self._async = self._async, {}
        for loop, client in clients.items():
            try:
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(5)
                elif not loop.is_closed():
                    loop.run_until_complete(client.aclose())
            except Exception:  # the loop went away under us; nothing left to close
                pass


def error_answer(status: int, message: str, request_id: str | None) -> Answer:
    return _error(status, message, request_id)


def describe_counters(c: Counters) -> dict[str, Any]:
    return {
        "requests": c.requests,
        "errors": c.errors,
        "p50_latency_ms": c.quantile(0.5),
        "p99_latency_ms": c.quantile(0.99),
    }
