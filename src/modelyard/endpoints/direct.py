"""Each endpoint's own address: the router served on a loopback port per endpoint.

Besides the control plane's ``/endpoints/{name}/invocations``, the endpoints controller
serves every endpoint on a port of its own (``Endpoint.port``), with the SageMaker and
Open Inference Protocol paths a model server has: ``GET /ping`` (200 while a replica is
ready), ``POST /invocations`` and ``POST /v2/models/{model}/infer``. A client that was
written for one model server can be pointed at an endpoint unchanged. The same router
(weights, headers, shadows, capture, counters) answers, and the same permission check
applies: with auth on, a bearer token with ``endpoints.write`` is required.

The servers run in the controller's process (one small uvicorn server in a thread per
endpoint) and bind 127.0.0.1. The port is kept in the ``endpoints`` row and reused after
a restart when it is still free.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable

import orjson
import uvicorn
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from modelyard.core.ids import new_id
from modelyard.endpoints.router import Router
from modelyard.errors import ModelyardError, PayloadTooLarge

log = logging.getLogger("modelyard.endpoints")

HOST = "127.0.0.1"
MAX_BODY_BYTES = 32 * 1024 * 1024
_INFER = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# (bearer token or None, request id) -> None; raises Unauthenticated/PermissionDenied.
Authorize = Callable[[str | None, str, str], None]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class EndpointApp:
    """The raw ASGI app of one endpoint's address."""

    def __init__(self, name: str, router: Router, authorize: Authorize | None) -> None:
        self.name = name
        self.router = router
        self.authorize = authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else new_id("req")
        path, method = scope["path"], scope["method"]
        try:
            if path == "/ping" and method == "GET":
                table = await self.router.table_async(self.name)
                ready = any(r.replicas for r in table.routes.values() if not r.shadow)
                body = orjson.dumps({"status": "ok" if ready else "no ready replica"})
                await self._send(send, 200 if ready else 503, body, {}, request_id)
                return
            if method != "POST" or (path != "/invocations" and not _INFER.fullmatch(path)):
                message = f"no route {method} {path}; see /ping, /invocations, /v2/models/.../infer"
                await self._error(send, 404, "not_found", message, request_id)
                return
            if self.authorize is not None:
                auth = headers.get("authorization", "")
                scheme, _, token = auth.partition(" ")
                bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
                client = scope.get("client")
                source = str(client[0]) if client else "unknown"
                await run_in_threadpool(self.authorize, bearer, request_id, source)
            body = await self._body(receive)
            answer = await self.router.invoke(
                self.name,
                body,
                content_type=headers.get("content-type", "application/json"),
                accept=headers.get("accept"),
                request_id=request_id,
                path="/invocations" if path == "/invocations" else "/v2/infer",
            )
        except ModelyardError as exc:
            await self._error(send, exc.status, exc.code, exc.message, request_id)
            return
        await self._send(send, answer.status, answer.body, answer.headers, request_id)

    @staticmethod
    async def _body(receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise PayloadTooLarge(f"the request body is over {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _error(
        self, send: Send, status: int, code: str, message: str, request_id: str
    ) -> None:
        body = orjson.dumps({"code": code, "message": message, "request_id": request_id})
        await self._send(send, status, body, {"content-type": "application/json"}, request_id)

    @staticmethod
    async def _send(
        send: Send, status: int, body: bytes, headers: dict[str, str], request_id: str
    ) -> None:
        out = {"content-type": "application/json", **headers, "x-request-id": request_id}
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


_THREAD_PREFIX = "modelyard-endpoint-"


class _Config(uvicorn.Config):
    """uvicorn's settings without its logging set-up.

    ``uvicorn.Config`` configures the process's logging when it is built: the levels of
    ``uvicorn.error``/``uvicorn.access`` and, with ``access_log=False``, removing every
    handler of ``uvicorn.access``. For a server started inside ``modelyard up`` that
    silenced the control plane's own log (its access lines and its shutdown) from the
    first endpoint on. These servers leave the process's logging as it is.
    """

    def configure_logging(self) -> None:
        pass


class _QuietServers(logging.Filter):
    """Drops uvicorn's below-warning lines ("Started server process", "Uvicorn running
    on …", "Shutting down") logged by an endpoint's own server: in the control plane's log
    they would read as the control plane's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not (record.threadName or "").startswith(
            _THREAD_PREFIX
        )


_QUIET = _QuietServers()


class _Served:
    def __init__(self, name: str, port: int, app: EndpointApp) -> None:
        self.port = port
        config = _Config(app, host=HOST, port=port, lifespan="off", access_log=False)
        uvicorn_log = logging.getLogger("uvicorn.error")
        if _QUIET not in uvicorn_log.filters:
            uvicorn_log.addFilter(_QUIET)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, name=f"{_THREAD_PREFIX}{name}", daemon=True
        )


class DirectServers:
    """The per-endpoint servers of one controller."""

    def __init__(self, router: Router, authorize: Authorize | None) -> None:
        self.router = router
        self.authorize = authorize
        self._servers: dict[str, _Served] = {}
        self._lock = threading.Lock()

    def port(self, name: str) -> int | None:
        with self._lock:
            served = self._servers.get(name)
        return served.port if served is not None else None

    def ensure(self, name: str, wanted: int | None) -> int | None:
        """Serve ``name`` (on ``wanted`` if free); its port, or None if it cannot start."""
        with self._lock:
            served = self._servers.get(name)
            if served is not None and served.thread.is_alive():
                return served.port
        port = wanted if wanted is not None and _port_free(wanted) else _free_port()
        served = _Served(name, port, EndpointApp(name, self.router, self.authorize))
        served.thread.start()
        deadline = time.monotonic() + 10
        while not served.server.started:
            if not served.thread.is_alive() or time.monotonic() > deadline:
                log.error("could not serve endpoint %s on port %d", name, port)
                served.server.should_exit = True
                return None
            time.sleep(0.01)
        with self._lock:
            self._servers[name] = served
        return port

    def stop(self, name: str) -> None:
        with self._lock:
            served = self._servers.pop(name, None)
        if served is not None:
            served.server.should_exit = True
            served.thread.join(10)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._servers)

    def close(self) -> None:
        for name in self.names():
            with contextlib.suppress(Exception):
                self.stop(name)
