"""Serving the console: ``/`` (the page), ``/console/…`` (its modules, styles, vendored
libraries), with a Content-Security-Policy and the other browser safety headers.

The assets are built by ``make console`` (``console/build.mjs``) into ``static/`` beside
this module. Nothing here reads data: every page fetches ``/api/v1/…`` with the caller's
bearer token, so the API's own permission checks apply to everything the console shows.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]

NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>modelyard</title>
<p>The modelyard console is not built in this install. Run <code>make console</code>
(it needs Node.js and npm) and restart the server. The API is at <a href="/docs">/docs</a>.
"""


def static_dir() -> Path:
    """Where ``make console`` puts the built assets."""
    return Path(__file__).parent / "static"


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                headers = [h for h in message.get("headers", []) if h[0] not in names]
                message["headers"] = headers + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def _with_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS:
        response.headers[name.decode()] = value.decode()
    return response


def mount_console(api: FastAPI) -> None:
    """Serve the console at ``/`` and its assets under ``/console/``."""
    root = static_dir()

    @api.get("/", include_in_schema=False)
    def console_page() -> Response:
        index = root / "index.html"
        if not index.is_file():
            return _with_headers(HTMLResponse(NOT_BUILT, status_code=503))
        return _with_headers(FileResponse(index, media_type="text/html; charset=utf-8"))

    if root.is_dir():
        api.mount("/console", SecurityHeaders(StaticFiles(directory=root)), name="console")
