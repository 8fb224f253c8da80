"""The router's HTTP routes: ``POST /endpoints/{name}/invocations`` (and OIP v2 infer).

These are raw proxy routes, not JSON operations: the body goes to a replica as it is,
and the replica's status, body and ``Content-Type`` come back, with
``X-Modelyard-Variant`` and ``X-Modelyard-Model-Version`` added by the router. The
caller is authenticated and authorised (``endpoints.write``, through the
``endpoints.invoke`` pseudo-operation, whose refusals are audited) before the body is
read. They are not in the OpenAPI document.
"""

from __future__ import annotations

import re
from functools import partial

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from modelyard.endpoints.invoke import INVOKE
from modelyard.endpoints.plane import plane_for
from modelyard.endpoints.schemas import ENDPOINT_NAME
from modelyard.errors import NotFound
from modelyard.runtime import Runtime
from modelyard.server.routes import bearer_token

_NAME = re.compile(ENDPOINT_NAME)


def invocations_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    async def forward(request: Request, path: str) -> Response:
        name = request.path_params["name"]
        origin = request.client.host if request.client else "unknown"
        request_id = request.state.request_id
        principal = await run_in_threadpool(
            partial(
                runtime.authenticate,
                bearer_token(request),
                origin=origin,
                request_id=request_id,
                operation=INVOKE.name,
            )
        )
        await run_in_threadpool(
            partial(runtime.authorize, INVOKE, principal, origin=origin, request_id=request_id)
        )
        if not _NAME.fullmatch(name):
            raise NotFound(f"no endpoint named {name!r}")
        body = await request.body()
        answer = await plane_for(runtime).router.invoke(
            name,
            body,
            content_type=request.headers.get("content-type", "application/json"),
            accept=request.headers.get("accept"),
            request_id=request_id,
            path=path,
        )
        return Response(answer.body, status_code=answer.status, headers=answer.headers)

    async def invocations(request: Request) -> Response:
        return await forward(request, "/invocations")

    async def infer(request: Request) -> Response:
        return await forward(request, "/v2/infer")

    router.add_api_route("/endpoints/{name}/invocations", invocations, methods=["POST"])
    router.add_api_route("/endpoints/{name}/v2/models/{model}/infer", infer, methods=["POST"])
    return router
