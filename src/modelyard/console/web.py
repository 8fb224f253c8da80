"""Serving the console: ``/`` (the page), ``/console/…`` (its modules, styles, vendored
libraries), with a Content-Security-Policy and the other browser safety headers.

The assets are built by ``make console`` (``console/build.mjs``) into ``static/`` beside
this module. They are small (about 2.2 MB, 1.9 MB of it the Swagger UI of ``/docs``), so
they are served from memory: read once, with a SHA-256 ETag each, and read again only
when the build's stamp file changes. Only
the files found in that folder are served; any other path is a 404. Nothing here reads
data: every page fetches ``/api/v1/…`` with the caller's bearer token, so the API's own
permission checks apply to everything the console shows.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, Response

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    # Revalidate every time (cheap: ETag), so a rebuilt console is never half stale.
    "cache-control": "no-cache",
}
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>modelyard</title>
<p>The modelyard console is not built in this install. Run <code>make console</code>
(it needs Node.js and npm) and restart the server. The API is at <a href="/docs">/docs</a>.
"""


def static_dir() -> Path:
    """Where ``make console`` puts the built assets."""
    return Path(__file__).parent / "static"


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


class Assets:
    """The built files by relative path, reloaded when the folder's build stamp changes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stamp: float | None = None
        self.files: dict[str, Asset] = {}

    def _current_stamp(self) -> float | None:
        for name in (".built", "index.html"):
            try:
                return os.stat(self.root / name).st_mtime
            except OSError:
                continue
        return None

    def get(self, path: str) -> Asset | None:
        stamp = self._current_stamp()
        if stamp != self.stamp:
            self.files = self._load() if stamp is not None else {}
            self.stamp = stamp
        return self.files.get(path)

    def _load(self) -> dict[str, Asset]:
        files: dict[str, Asset] = {}
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                full = Path(dirpath) / name
                if name.startswith(".") or full.is_symlink():
                    continue
                body = full.read_bytes()
                media = MEDIA_TYPES.get(full.suffix) or (
                    mimetypes.guess_type(name)[0] or "application/octet-stream"
                )
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                files[full.relative_to(self.root).as_posix()] = Asset(body, media, etag)
        return files


def _response(request: Request, asset: Asset) -> Response:
    headers = {**SECURITY_HEADERS, "etag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def mount_console(api: FastAPI) -> None:
    """Serve the console at ``/`` and its assets under ``/console/``."""
    assets = Assets(static_dir())

    @api.get("/", include_in_schema=False)
    async def console_page(request: Request) -> Response:
        index = assets.get("index.html")
        if index is None:
            return HTMLResponse(NOT_BUILT, status_code=503, headers=SECURITY_HEADERS)
        return _response(request, index)

    @api.get("/console/{path:path}", include_in_schema=False)
    async def console_asset(request: Request, path: str) -> Response:
        asset = assets.get(path)
        if asset is None:
            return Response(
                "not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS
            )
        return _response(request, asset)
