"""The APIRouter serving MLflow's REST API (``build_api`` includes it).

Routes: ``/api/2.0/mlflow/...`` (and the same under ``/ajax-api/2.0/mlflow/...``, which
MLflow's web UI uses) and the proxied artifact routes ``/api/2.0/mlflow-artifacts/...``.
Every route resolves the caller from ``Authorization: Bearer <token>`` (what the
MLflow client sends when ``MLFLOW_TRACKING_TOKEN`` is set), then calls modelyard
operations as that caller. Errors are answered in MLflow's shape
(``{"error_code": ..., "message": ...}``) so MLflow's client raises its usual exceptions.
None of these routes appears in modelyard's OpenAPI document.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from modelyard.core.operations import StreamResult
from modelyard.errors import ModelyardError
from modelyard.mlflow_compat import artifacts, logged_models, registry, tracking
from modelyard.mlflow_compat.calls import Caller
from modelyard.mlflow_compat.errors import (
    ENDPOINT_NOT_FOUND,
    MlflowError,
    error_response,
    from_exception,
    invalid,
)
from modelyard.runtime import Runtime
from modelyard.server import jsonbody
from modelyard.server.headers import user_content_response
from modelyard.server.routes import SPOOL_BYTES, bearer_token

log = logging.getLogger("modelyard.mlflow_compat")

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
# The upload route, for the server's body-size limit (uploads get the upload limit).
UPLOAD_ROUTE = r"/(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/.+"

Endpoint = Callable[[Request], Awaitable[Response]]


def _origin(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _caller(runtime: Runtime, request: Request) -> Caller:
    """The caller, authenticated (a refusal is audited against the route it tried)."""
    route = getattr(request.scope.get("route"), "path", request.url.path)
    origin, request_id = _origin(request), request.state.request_id
    principal = runtime.authenticate(
        bearer_token(request),
        origin=origin,
        request_id=request_id,
        operation=f"mlflow {request.method} {route}",
    )
    return Caller(runtime=runtime, principal=principal, origin=origin, request_id=request_id)


def _failure(request: Request, exc: Exception) -> JSONResponse:
    error = from_exception(exc)
    if error.status >= 500:
        if isinstance(exc, ModelyardError):
            log.error("MLflow request %s failed: %s", request.state.request_id, exc)
        else:
            log.error("MLflow request %s failed", request.state.request_id, exc_info=exc)
            error = MlflowError(error.code, f"internal error (request {request.state.request_id})")
    return error_response(error)


async def _arguments(request: Request) -> dict[str, Any]:
    """Query parameters for GET, the JSON object body otherwise (MLflow's client sends
    DELETE parameters as a body too), plus the path's fields."""
    if request.method == "GET":
        args: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            if key in args:  # a repeated parameter is a list (order_by)
                previous = args[key]
                args[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                args[key] = value
    else:
        raw = await request.body()
        try:
            parsed = jsonbody.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            msg = getattr(exc, "msg", str(exc))
            raise invalid(f"the request body is not valid JSON: {msg}") from None
        if not isinstance(parsed, dict):
            raise invalid("the request body must be a JSON object")
        args = parsed
    args.update(request.path_params)
    return args


def _json_endpoint(runtime: Runtime, handler: tracking.Handler) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            # Authenticated before the body is read: an anonymous caller learns nothing
            # of what a request should look like.
            call = await run_in_threadpool(_caller, runtime, request)
            args = await _arguments(request)
            result = await run_in_threadpool(handler, call, args)
        except Exception as exc:
            return _failure(request, exc)
        return JSONResponse(result)

    return endpoint


def _stream(result: StreamResult) -> Response:
    return user_content_response(result)


def _artifact_endpoints(runtime: Runtime) -> dict[str, Endpoint]:
    upload_op = runtime.operations["tracking.log_artifact"]

    async def put(request: Request) -> Response:
        location = request.path_params["location"]
        try:
            call = await run_in_threadpool(_caller, runtime, request)
            exp_id, run_id, _ = artifacts.split_location(location)
            # Who is calling, may they, and does the run exist: all settled before a byte
            # of the body is read, as for modelyard's own upload routes.
            await run_in_threadpool(
                partial(
                    runtime.authorize,
                    upload_op,
                    call.principal,
                    origin=call.origin,
                    request_id=call.request_id,
                )
            )
            await run_in_threadpool(artifacts.check_run, call, exp_id, run_id)
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
                async for chunk in request.stream():
                    await run_in_threadpool(spool.write, chunk)
                spool.seek(0)
                result = await run_in_threadpool(artifacts.upload, call, location, spool)
        except Exception as exc:
            return _failure(request, exc)
        return JSONResponse(result)

    async def get(request: Request) -> Response:
        try:
            call = await run_in_threadpool(_caller, runtime, request)
            result = await run_in_threadpool(
                artifacts.download, call, request.path_params["location"]
            )
        except Exception as exc:
            return _failure(request, exc)
        return _stream(result)

    return {"put": put, "get": get}


def mlflow_router(runtime: Runtime) -> APIRouter:
    """Every MLflow route this server answers (see ``docs/mlflow-compat.md``)."""
    router = APIRouter(include_in_schema=False)
    json_routes = [*tracking.ROUTES, *logged_models.ROUTES, *registry.ROUTES]
    json_routes.append(("GET", "artifacts/list", artifacts.list_run_artifacts))
    for prefix in PREFIXES:
        for method, path, handler in json_routes:
            router.add_api_route(
                f"{prefix}/{path}", _json_endpoint(runtime, handler), methods=[method]
            )
    stream = _artifact_endpoints(runtime)
    for prefix in ARTIFACT_PREFIXES:
        router.add_api_route(
            f"{prefix}/artifacts",
            _json_endpoint(runtime, artifacts.list_location),
            methods=["GET"],
        )
        router.add_api_route(
            f"{prefix}/artifacts/{{location:path}}", stream["put"], methods=["PUT"]
        )
        router.add_api_route(
            f"{prefix}/artifacts/{{location:path}}", stream["get"], methods=["GET"]
        )

    async def not_supported(request: Request) -> Response:
        return error_response(
            MlflowError(
                ENDPOINT_NOT_FOUND,
                f"{request.method} {request.url.path} is not part of modelyard's MLflow API "
                "(see docs/mlflow-compat.md for what is supported)",
            )
        )

    for prefix in (*PREFIXES, *ARTIFACT_PREFIXES):
        router.add_api_route(
            f"{prefix}/{{rest:path}}",
            not_supported,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        )
    return router
