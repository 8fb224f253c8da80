"""Browser safety headers on every response, and how user content is served.

Every response gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer`` and a Content-Security-Policy: the one the route set
(the console's, the API docs', user content's), or else :data:`API_CSP`, which lets a
browser run, load or frame nothing at all: JSON needs none of it.

User content (artifacts, on every route that serves them) is untrusted: an uploaded
``evil.html`` or ``evil.svg`` must never run as a page of this origin, where it could
call the API with the console's token. :func:`user_content_response` therefore always
answers ``application/octet-stream`` with ``Content-Disposition: attachment`` and a
``sandbox`` CSP, whatever the file is called. The console previews text and images by
fetching the bytes and rendering them itself.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.core.operations import StreamResult

#: The CSP of every response that does not set its own (JSON, errors, redirects).
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: The CSP of user content: a document that runs nothing and has no origin of its own.
USER_CONTENT_CSP = "sandbox; default-src 'none'; frame-ancestors 'none'"
BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ +\-()\[\]]")


class SecurityHeadersMiddleware:
    """Add the browser safety headers to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {key.lower() for key, _ in headers}
                headers.extend(h for h in BASE_HEADERS if h[0] not in present)
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", API_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def safe_filename(name: str | None) -> str:
    """``name`` reduced to characters safe in a quoted header parameter (never empty)."""
    ascii_name = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode()
    cleaned = _UNSAFE_FILENAME.sub("_", ascii_name).strip(" .") or "artifact"
    return cleaned[:150]


def content_disposition(name: str | None) -> str:
    """``attachment`` with an ASCII ``filename`` and, for other names, RFC 5987 ``filename*``."""
    value = f'attachment; filename="{safe_filename(name)}"'
    if name and safe_filename(name) != name:
        value += f"; filename*=UTF-8''{quote(name[:150], safe='')}"
    return value


def user_content_response(result: StreamResult) -> StreamingResponse:
    """Serve a stream of stored bytes so that no browser renders or runs them."""
    headers = dict(result.headers)
    if result.size is not None:
        headers["content-length"] = str(result.size)
    headers["content-disposition"] = content_disposition(result.filename)
    headers["content-security-policy"] = USER_CONTENT_CSP
    headers["x-content-type-options"] = "nosniff"
    headers["cache-control"] = "private"  # it may need auth: never in a shared cache
    return StreamingResponse(result.chunks, media_type="application/octet-stream", headers=headers)
