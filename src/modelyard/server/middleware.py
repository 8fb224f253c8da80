"""ASGI middleware: Host-header checking (DNS rebinding), request ids, body size limits."""

from __future__ import annotations

import re

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.core.ids import new_id
from modelyard.errors import PayloadTooLarge

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A Host header: a name or IPv4 address, or a bracketed IPv6 address, and an optional port.
# Nothing else (no userinfo '@', no path, no second port) names a host.
_HOST = re.compile(
    r"^(?:\[(?P<ipv6>[0-9a-f:.]{2,45})\]|(?P<name>[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?))"
    r"(?::[0-9]{1,5})?$"
)


def parse_host(value: str) -> str | None:
    """The host of a ``Host`` header value (lower case, IPv6 without brackets); ``None``
    when the value is not exactly ``host[:port]``."""
    m = _HOST.fullmatch(value.strip().lower())
    if m is None:
        return None
    return m.group("ipv6") or m.group("name")


def _values(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope["headers"] if k == name]


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"code": code, "message": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HostCheckMiddleware:
    """Refuse requests whose Host header names a host this server was not bound for.

    A web page on an attacker's domain can make a browser on the same machine send
    requests to 127.0.0.1 under the attacker's host name (DNS rebinding); checking the
    Host header stops that. Bound to a wildcard address, the check uses the configured
    extra hosts, or is left to auth when none are configured (auth is then mandatory).
    """

    def __init__(self, app: ASGIApp, *, bind_host: str, extra_hosts: list[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in (*LOOPBACK_HOSTS, bind_host, *extra_hosts)}
        self.check = not (bind_host in WILDCARD_BINDS and not extra_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            values = _values(scope, b"host")
            # Two Host headers would let one check read one and another the other.
            if len(values) > 1:
                await _send_error(send, 400, "invalid_host", "more than one Host header")
                return
            host = parse_host(values[0]) if values else ""
            if host is None:
                await _send_error(
                    send,
                    400,
                    "invalid_host",
                    f"Host {values[0][:100]!r} is not host[:port]",
                )
                return
            if self.check and host not in self.allowed:
                await _send_error(send, 421, "invalid_host", f"Host {host!r} is not served here")
                return
        await self.app(scope, receive, send)


class RequestIdMiddleware:
    """Give every request an id (the caller's X-Request-Id if sane) and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _REQUEST_ID.fullmatch(candidate) else ""
        request_id = request_id or new_id("req")
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyLimitMiddleware:
    """413 for bodies over the limit: the upload routes (chosen by method and path, never by
    the client's Content-Type) get ``upload_limit``, every other route ``json_limit``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        json_limit: int,
        upload_limit: int,
        upload_routes: list[tuple[str, re.Pattern[str]]],
    ) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit
        self.upload_routes = upload_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        method, path = scope["method"], scope["path"]
        is_upload = any(m == method and p.fullmatch(path) for m, p in self.upload_routes)
        limit = self.upload_limit if is_upload else self.json_limit
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(
                send, 413, "payload_too_large", f"request body over the {limit}-byte limit"
            )
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge as exc:
            if not started:
                await _send_error(
                    send, 413, "payload_too_large", f"request body over the {exc.limit}-byte limit"
                )


class _TooLarge(PayloadTooLarge):
    """Raised from ``receive``; the app's error handler answers it with a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over the {limit}-byte limit")
        self.limit = limit


class OriginCheckMiddleware:
    """Refuse state-changing requests that a browser sent from another site (CSRF).

    Browsers attach ``Origin`` to every cross-origin POST/PUT/PATCH/DELETE, and a plain
    HTML form can send one with no credentials at all: on a loopback server without auth
    (where no token is needed) a page on any site could otherwise approve a model. A
    request whose ``Origin`` names neither this server's host (the ``Host`` header) nor
    one of the CORS origins is refused with 403; so is one that a browser marks
    ``Sec-Fetch-Site: cross-site`` without an ``Origin``. Clients that are not browsers
    (the SDK, the CLI, curl) send neither header and are unaffected.
    """

    SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp, *, allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed = {o.strip().rstrip("/").lower() for o in allowed_origins}

    def _refused(self, headers: dict[bytes, bytes]) -> str | None:
        origin = headers.get(b"origin")
        if origin is None:
            if headers.get(b"sec-fetch-site", b"").lower() == b"cross-site":
                return "cross-site"
            return None
        value = origin.decode("latin-1").strip().rstrip("/").lower()
        if value in self.allowed:
            return None
        host = headers.get(b"host", b"").decode("latin-1").strip().lower()
        _, sep, netloc = value.partition("://")
        if sep and host and netloc == host:
            return None
        return value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and len(_values(scope, b"origin")) > 1:
            # Browsers send one; with two, this check and the CORS layer could each read
            # a different one.
            await _send_error(send, 400, "invalid_origin", "more than one Origin header")
            return
        if scope["type"] == "http" and scope["method"] not in self.SAFE_METHODS:
            refused = self._refused(dict(scope["headers"]))
            if refused is not None:
                await _send_error(
                    send,
                    403,
                    "cross_origin_refused",
                    f"a {scope['method']} from origin {refused!r} is refused: only this "
                    "server's own pages (and MODELYARD_CORS_ORIGINS) may change state "
                    "from a browser",
                )
                return
        await self.app(scope, receive, send)
