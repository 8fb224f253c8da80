"""The ASGI application served by ``modelyard up``."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

import modelyard
from modelyard.console import mount_console
from modelyard.errors import ModelyardError, describe_validation_errors
from modelyard.mlflow_compat import router as mlflow_compat
from modelyard.runtime import Runtime
from modelyard.server.docs import mount_docs
from modelyard.server.headers import SecurityHeadersMiddleware
from modelyard.server.invocations import invocations_router
from modelyard.server.middleware import (
    BodyLimitMiddleware,
    HostCheckMiddleware,
    OriginCheckMiddleware,
    RequestIdMiddleware,
)
from modelyard.server.routes import API_PREFIX, operations_router

log = logging.getLogger("modelyard.server")
JSON_BODY_LIMIT = 32 * 1024 * 1024


def _error(status: int, code: str, message: str, request: Request, **details: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    body["request_id"] = getattr(request.state, "request_id", None)
    return JSONResponse(body, status_code=status)


def build_api(runtime: Runtime) -> FastAPI:
    """The FastAPI application, without the outer ASGI middleware."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.start_background()
        yield
        runtime.close()

    api = FastAPI(
        title="modelyard",
        version=modelyard.__version__,
        description="The modelyard control plane. Every route is an operation of the SDK.",
        lifespan=lifespan,
        docs_url=None,  # server/docs.py: Swagger UI from the package, not a CDN
        redoc_url=None,
    )

    @api.exception_handler(ModelyardError)
    async def on_modelyard_error(request: Request, exc: ModelyardError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request %s failed: %s", getattr(request.state, "request_id", "?"), exc)
        return _error(exc.status, exc.code, exc.message, request, **exc.details)

    @api.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, problems = describe_validation_errors(list(exc.errors()))
        return _error(400, "invalid_input", message, request, problems=problems)

    @api.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), request)

    @api.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "?")
        log.exception("request %s failed", request_id)
        return _error(500, "internal_error", f"internal error (request {request_id})", request)

    @api.get("/healthz", tags=["health"], summary="Liveness: the process serves requests.")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", tags=["health"], summary="Readiness: metadata and artifact stores answer.")
    def readyz(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            with runtime.db.transaction(write=False) as session:
                session.execute(text("SELECT 1"))
            checks["metadata"] = "ok"
        except Exception as exc:
            checks["metadata"] = f"error: {type(exc).__name__}"
        try:
            runtime.artifacts.exists("0" * 64)
            checks["artifacts"] = "ok"
        except Exception as exc:
            checks["artifacts"] = f"error: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    api.include_router(operations_router(runtime))
    api.include_router(mlflow_compat.mlflow_router(runtime))
    api.include_router(invocations_router(runtime))
    mount_console(api)
    mount_docs(api)
    return api


def create_app(runtime: Runtime) -> ASGIApp:
    """The full ASGI app: the API wrapped in host checking, request ids and body limits."""
    settings = runtime.settings
    app: ASGIApp = build_api(runtime)
    if settings.cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id"],
        )
    app = OriginCheckMiddleware(app, allowed_origins=settings.cors_origins)
    app = RequestIdMiddleware(app)
    upload_routes = [
        (op.method, re.compile(API_PREFIX + re.sub(r"{[a-z_][a-z0-9_]*}", "[^/]+", op.path)))
        for op in runtime.operations.values()
        if op.stream_in
    ]
    upload_routes.append(("PUT", re.compile(mlflow_compat.UPLOAD_ROUTE)))
    app = BodyLimitMiddleware(
        app,
        json_limit=JSON_BODY_LIMIT,
        upload_limit=settings.max_upload_bytes,
        upload_routes=upload_routes,
    )
    app = HostCheckMiddleware(app, bind_host=settings.host, extra_hosts=settings.allowed_hosts)
    return SecurityHeadersMiddleware(app)  # outermost: refusals get the headers too
