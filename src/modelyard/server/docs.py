"""``/docs``: Swagger UI for the OpenAPI schema, from files in the package, under a CSP.

FastAPI's default page loads Swagger UI from a CDN and starts it with an inline script.
This one loads the copies that ``make console`` vendors into the console's assets
(``/console/vendor/swagger-ui-bundle.js`` and ``swagger-ui.css``, from the npm package
``swagger-ui-dist``) and starts it from ``/docs/init.js``, so it works without network
and under a CSP that allows no inline script and no other host.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import HTMLResponse, Response

from modelyard.console import static_dir

#: Scripts, styles and requests only from this origin; nothing inline (checked in Chromium:
#: Swagger UI renders and expands operations with no CSP violation).
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
JS_URL = "/console/vendor/swagger-ui-bundle.js"
CSS_URL = "/console/vendor/swagger-ui.css"
INIT_URL = "/docs/init.js"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>modelyard API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{CSS_URL}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{JS_URL}"></script>
<script src="{INIT_URL}"></script>
</body>
</html>
"""

INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
"""

NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>modelyard API</title>
<p>The API documentation page needs the console's assets, which are not built in this
install: run <code>make console</code> and restart the server. The OpenAPI schema is at
<a href="/openapi.json">/openapi.json</a>.
"""


def mount_docs(api: FastAPI) -> None:
    """Serve ``/docs`` and its start script (create the app with ``docs_url=None``)."""
    headers = {"content-security-policy": DOCS_CSP, "cache-control": "no-cache"}

    @api.get("/docs", include_in_schema=False)
    async def docs_page() -> Response:
        if not (static_dir() / "vendor" / "swagger-ui-bundle.js").is_file():
            return HTMLResponse(NOT_BUILT, status_code=503, headers=headers)
        return HTMLResponse(PAGE, headers=headers)

    @api.get(INIT_URL, include_in_schema=False)
    async def docs_init() -> Response:
        return Response(INIT, media_type="text/javascript; charset=utf-8", headers=headers)
