"""HTTP routes derived from operation declarations (see ``core/operations.py``).

For each operation this builds one FastAPI endpoint whose signature is generated from
the operation's input model: path fields become path parameters, the rest a query model
(GET/DELETE) or a JSON body model (POST/PUT/PATCH). FastAPI then documents it in the
OpenAPI schema and parses it; the endpoint rebuilds the input model and hands it to
:meth:`Runtime.execute`, exactly as the embedded client does.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Annotated, Any

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from fastapi import APIRouter, Body, Path, Query, Request, Response
from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo
from starlette.concurrency import run_in_threadpool

from modelyard.core.operations import Operation, StreamResult
from modelyard.runtime import Runtime
from modelyard.server.headers import user_content_response
from modelyard.server.jsonbody import JsonRoute

API_PREFIX = "/api/v1"
SPOOL_BYTES = 8 * 1024 * 1024


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _origin(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _path_param(field: FieldInfo) -> Any:
    """A FastAPI ``Path()`` carrying the field's constraints, so OpenAPI shows them."""
    kwargs: dict[str, Any] = {"description": field.description}
    for meta in field.metadata:
        if isinstance(meta, Ge):
            kwargs["ge"] = meta.ge
        elif isinstance(meta, Gt):
            kwargs["gt"] = meta.gt
        elif isinstance(meta, Le):
            kwargs["le"] = meta.le
        elif isinstance(meta, Lt):
            kwargs["lt"] = meta.lt
        elif isinstance(meta, MinLen):
            kwargs["min_length"] = meta.min_length
        elif isinstance(meta, MaxLen):
            kwargs["max_length"] = meta.max_length
        elif getattr(meta, "pattern", None):
            kwargs["pattern"] = meta.pattern
    return Path(**kwargs)


def _sub_model(op: Operation[Any, Any], suffix: str) -> type[BaseModel] | None:
    fields = {
        name: (field.annotation, field)
        for name, field in op.input.model_fields.items()
        if name not in op.path_params
    }
    if not fields:
        return None
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{op.input.__name__}{suffix}", __doc__=op.input.__doc__, **fields
    )
    return model


def _json(result: BaseModel) -> Response:
    return Response(content=result.model_dump_json(), media_type="application/json")


def _build_endpoint(op: Operation[Any, Any], runtime: Runtime) -> Any:
    params = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    ]
    for name in op.path_params:
        field = op.input.model_fields[name]
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[field.annotation, _path_param(field)],
            )
        )
    rest = _sub_model(op, "Body" if op.body_in_json else "Query")
    if rest is not None:
        marker = Body() if op.body_in_json else Query()
        optional = not any(f.is_required() for f in rest.model_fields.values())
        params.append(
            inspect.Parameter(
                "payload",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[rest | None if optional else rest, marker],
                default=None if optional else inspect.Parameter.empty,
            )
        )

    def build_input(kwargs: dict[str, Any]) -> BaseModel:
        payload = kwargs.pop("payload", None)
        # The fields FastAPI already validated, as objects (not dumped to dicts): nested
        # models pass through without being validated a second time.
        data = (
            {name: getattr(payload, name) for name in payload.model_fields_set}
            if payload is not None
            else {}
        )
        req: BaseModel = op.input.model_validate({**data, **kwargs})
        return req

    def run(request: Request, req: BaseModel, stream: Any = None) -> Any:
        return runtime.execute(
            op,
            req,
            request.state.principal,
            origin=_origin(request),
            request_id=request.state.request_id,
            stream=stream,
        )

    def respond(result: Any) -> Response:
        if isinstance(result, StreamResult):
            return user_content_response(result)
        return _json(result)

    if op.stream_in:

        async def stream_endpoint(request: Request, **kwargs: Any) -> Response:
            req = build_input(kwargs)
            # The caller is known and may call the operation (OperationRoute); may they
            # with these parameters is settled too before a byte of the body is read: an
            # unauthorised client cannot make the server store anything.
            await run_in_threadpool(
                partial(
                    runtime.authorize,
                    op,
                    request.state.principal,
                    origin=_origin(request),
                    request_id=request.state.request_id,
                    req=req,
                )
            )
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
                # Spool the body first: the operation is synchronous and runs in a worker
                # thread; the spool keeps memory flat for large uploads.
                async for chunk in request.stream():
                    await run_in_threadpool(spool.write, chunk)
                spool.seek(0)
                result = await run_in_threadpool(run, request, req, spool)
            return respond(result)

        endpoint: Any = stream_endpoint
    else:

        def sync_endpoint(request: Request, **kwargs: Any) -> Response:
            return respond(run(request, build_input(kwargs)))

        endpoint = sync_endpoint
    endpoint.__signature__ = inspect.Signature(params, return_annotation=Response)
    endpoint.__name__ = op.name.replace(".", "_")
    return endpoint


def _permission_text(op: Operation[Any, Any]) -> str:
    text = f"Permission: `{op.permission}`"
    for name, by_value in op.stricter.items():
        for value, permission in by_value.items():
            text += f"; `{permission}` when `{name}` is `{value}`"
    return text + "."


def _operation_route(runtime: Runtime) -> type[JsonRoute]:
    class OperationRoute(JsonRoute):
        """Authenticates the caller and checks the operation's permission before FastAPI
        reads or validates anything of the request: an anonymous or unauthorised caller
        gets 401/403, never a validation error describing the input."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            op = runtime.operations[self.name]

            async def route_handler(request: Request) -> Response:
                origin, request_id = _origin(request), request.state.request_id
                principal = await run_in_threadpool(
                    partial(
                        runtime.authenticate,
                        bearer_token(request),
                        origin=origin,
                        request_id=request_id,
                        operation=op.name,
                    )
                )
                await run_in_threadpool(
                    partial(runtime.authorize, op, principal, origin=origin, request_id=request_id)
                )
                request.state.principal = principal
                return await handler(request)

            return route_handler

    return OperationRoute


def operations_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, route_class=_operation_route(runtime))
    for op in runtime.operations.values():
        extra: dict[str, Any] = {}
        if op.stream_in:
            extra["openapi_extra"] = {
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                }
            }
        responses: dict[int | str, dict[str, Any]] = {
            400: {"description": "Invalid input"},
            401: {"description": "Missing or invalid API token"},
            403: {"description": "The caller's role does not allow this"},
            404: {"description": "Not found"},
        }
        if op.stream_out:
            responses[200] = {
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }
            }
        router.add_api_route(
            op.path,
            _build_endpoint(op, runtime),
            methods=[op.method],
            name=op.name,
            summary=op.summary,
            description=(op.func.__doc__ or "").strip() + f"\n\n{_permission_text(op)}",
            response_model=None if op.stream_out else op.output,
            tags=[op.name.split(".", 1)[0]],
            operation_id=op.name.replace(".", "_"),
            responses=responses,
            **extra,
        )
    return router
