"""The model server: a small raw ASGI application (no framework on the request path).

Routes (SageMaker inference contract, then Open Inference Protocol v2):

- ``GET /ping``: 200 once the model is loaded, 503 while loading or after a failed load.
- ``POST /invocations``: rows in ``text/csv``, ``application/json``,
  ``application/jsonlines`` or ``application/x-npy``; predictions out in the format
  ``Accept`` names (JSON by default).
- ``GET /execution-parameters``: what SageMaker batch transform asks a container.
- ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]``,
  ``/v2/models/{name}[/versions/{v}]/ready``, ``POST /v2/models/{name}[/versions/{v}]/infer``.

Every response carries ``X-Request-Id`` (the caller's, if it is a sane token) and
``X-Modelyard-Model`` / ``X-Modelyard-Model-Version``. Errors are JSON:
``{"error": message, "code": ..., "request_id": ...}``; a model that raises gives a 500
with the request id and the server goes on serving; one that raises ``ValueError`` or
``TypeError`` on the request's data refused the caller's input: a 422 (``input_rejected``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from starlette.types import Message, Receive, Scope, Send

import modelyard
from modelyard.core.ids import new_id
from modelyard.errors import (
    InvalidInput,
    ModelyardError,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from modelyard.serving import codecs, oip
from modelyard.serving.batching import BatchStats, MicroBatcher
from modelyard.serving.errors import (
    REJECTS_INPUT,
    InputRejected,
    MethodNotAllowed,
    MisdirectedHost,
    ModelFailed,
    ModelNotReady,
    NotTheRouter,
)
from modelyard.serving.handler import normalise_output
from modelyard.serving.loading import servable_from_model
from modelyard.serving.model import Array, Servable
from modelyard.serving.settings import SECRET_HEADER, ServerSettings

log = logging.getLogger("modelyard.serving")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?$")
_SECRET_HEADER = SECRET_HEADER.encode()
_JSON = b"application/json"


class _Disconnected(Exception):
    """The client went away before sending its whole body."""


class ModelServer:
    """The ASGI app for one model version. Build it with :func:`build_app`.

    ``loader`` (used by the process entry point) loads the model during the ASGI lifespan
    startup, before uvicorn accepts connections; :meth:`start_loading` loads it in a
    background thread instead, with ``/ping`` answering 503 until it is loaded.
    """

    def __init__(
        self,
        settings: ServerSettings,
        servable: Servable | None = None,
        loader: Callable[[], Servable] | None = None,
    ) -> None:
        self.settings = settings
        self.servable = servable
        self.loader = loader
        self.load_error: str | None = None
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="modelyard-inference"
        )
        self._batchers: dict[str, MicroBatcher] = {}
        self._active = 0  # HTTP requests in progress in this worker
        self._static_headers = [
            (b"x-modelyard-model", settings.name.encode("latin-1", "replace")),
            (b"x-modelyard-model-version", settings.version.encode("latin-1", "replace")),
            *((k.lower().encode(), v.encode()) for k, v in settings.extra_headers.items()),
        ]

    # ----------------------------------------------------------------- state

    @property
    def ready(self) -> bool:
        return self.servable is not None

    def start_loading(self) -> None:
        """Load the model in a background thread (no-op when it is already loaded)."""
        if self.servable is not None or self.loader is None:
            return
        threading.Thread(target=self._load, name="modelyard-model-load", daemon=True).start()

    def _load(self) -> None:
        assert self.loader is not None
        try:
            self.servable = self.loader()
        except BaseException as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model %s failed to load: %s", self.settings.name, self.load_error)

    def batcher(self, kind: str, fn: Callable[[Array], Array]) -> MicroBatcher:
        """The batcher for ``predict`` or ``predict_proba``, bound to the running loop."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(kind)
        if batcher is None or batcher.loop is not loop:
            batcher = MicroBatcher(
                fn,
                self.executor,
                max_batch_size=self.settings.max_batch_size,
                max_wait_ms=self.settings.max_wait_ms,
            )
            self._batchers[kind] = batcher
        return batcher

    def batch_stats(self, kind: str = "predict") -> BatchStats | None:
        batcher = self._batchers.get(kind)
        return batcher.stats if batcher is not None else None

    # ----------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # uvicorn starts accepting connections after startup completes, so a worker
                # only takes requests once its model is loaded; a failed load still
                # completes startup, and /ping then answers 503 with the reason.
                if self.servable is None and self.loader is not None:
                    await asyncio.to_thread(self._load)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for batcher in self._batchers.values():
                    await batcher.close()
                self.executor.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else new_id("req")
        path: str = scope["path"]
        method: str = scope["method"]
        v2 = path.startswith("/v2")
        self._active += 1
        try:
            self._admit(headers)
            status, body, content_type = await self._route(
                method, path, headers, receive, request_id
            )
        except ModelyardError as exc:
            if exc.status >= 500:
                log.error("request %s failed: %s", request_id, exc.message)
            status, body, content_type = exc.status, _error_body(exc, request_id, v2), _JSON
        except _Disconnected:
            return
        except Exception as exc:  # a bug here must not take the server down
            log.exception("request %s failed", request_id)
            error = ModelFailed(f"internal error: {type(exc).__name__}: {exc}")
            status, body, content_type = 500, _error_body(error, request_id, v2), _JSON
        finally:
            self._active -= 1
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    *self._static_headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _admit(self, headers: dict[bytes, bytes]) -> None:
        """Refuse a foreign ``Host`` (421) and, on a replica, a request without its secret
        (403), before anything else is read."""
        settings = self.settings
        if settings.allowed_hosts:
            raw = headers.get(b"host", b"").decode("latin-1")
            match = _HOST.fullmatch(raw)
            name = match.group(1).strip("[]").lower() if match else None
            if name not in settings.allowed_hosts:
                raise MisdirectedHost(f"Host {raw!r} is not served here")
        if settings.secret is not None:
            given = headers.get(_SECRET_HEADER, b"")
            if not hmac.compare_digest(given, settings.secret.encode()):
                raise NotTheRouter(
                    "this model server is an endpoint replica: it answers only its "
                    "endpoint's router (call the endpoint instead)"
                )

    async def _route(
        self,
        method: str,
        path: str,
        headers: dict[bytes, bytes],
        receive: Receive,
        request_id: str,
    ) -> tuple[int, bytes, bytes]:
        if path == "/invocations":
            _allow(method, "POST", path)
            return await self._invocations(headers, receive, request_id)
        if path == "/ping":
            _allow(method, "GET", path)
            return self._health()
        if path in ("/v2/health/ready", "/v2/health/ready/"):
            _allow(method, "GET", path)
            return self._health()
        if path in ("/v2/health/live", "/v2/health/live/"):
            _allow(method, "GET", path)
            return 200, b'{"live":true}', _JSON
        if path in ("/v2", "/v2/"):
            _allow(method, "GET", path)
            body = {
                "name": "modelyard",
                "version": modelyard.__version__,
                "extensions": ["runtime"],
            }
            return 200, orjson.dumps(body), _JSON
        if path == "/execution-parameters":
            _allow(method, "GET", path)
            return 200, orjson.dumps(self._execution_parameters()), _JSON
        if path.startswith("/v2/models/"):
            return await self._v2_model(method, path, headers, receive, request_id)
        raise NotFound(f"no route {path!r}; see /ping, /invocations and /v2")

    def _health(self) -> tuple[int, bytes, bytes]:
        if self.servable is not None:
            return 200, b'{"status":"ready"}', _JSON
        status = "failed" if self.load_error else "loading"
        return 503, orjson.dumps({"status": status, "error": self.load_error}), _JSON

    def _execution_parameters(self) -> dict[str, Any]:
        return {
            "MaxConcurrentTransforms": 1,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": max(1, self.settings.max_payload_bytes // (1024 * 1024)),
        }

    def _loaded(self) -> Servable:
        if self.servable is None:
            raise ModelNotReady(
                f"model {self.settings.name!r} is "
                + (f"not loaded: {self.load_error}" if self.load_error else "still loading")
            )
        return self.servable

    # ----------------------------------------------------------------- bodies

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        limit = self.settings.max_payload_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(
                f"request body of {int(declared)} bytes is over the {limit}-byte limit"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # ----------------------------------------------------------------- SageMaker

    async def _invocations(
        self, headers: dict[bytes, bytes], receive: Receive, request_id: str
    ) -> tuple[int, bytes, bytes]:
        servable = self._loaded()
        content_type_header = headers.get(b"content-type", b"").decode("latin-1")
        accept_header = headers.get(b"accept", b"").decode("latin-1")
        if servable.handler is not None:
            body = await self._read_body(headers, receive)
            return await self._invoke_handler(
                servable, body, content_type_header, accept_header, request_id
            )
        content_type = codecs.require_content_type(content_type_header)
        accept = codecs.choose_accept(accept_header)
        body = await self._read_body(headers, receive)
        rows = codecs.decode(body, content_type, servable.schema)
        predictions = await self._predict(servable, rows, "predict", request_id)
        return 200, codecs.encode(predictions, accept), accept.encode()

    async def _predict(self, servable: Servable, rows: Array, kind: str, request_id: str) -> Array:
        fn = servable.predict if kind == "predict" else servable.predict_proba
        if fn is None:
            raise InvalidInput(f"model {servable.name!r} gives no {kind} output")
        try:
            if self._active == 1:
                # let requests that arrived with this one start, so they are counted
                await asyncio.sleep(0)
            return await self.batcher(kind, fn).submit(rows, alone=self._active == 1)
        except ModelyardError:
            raise
        except REJECTS_INPUT as exc:
            raise _rejected(exc) from None
        except Exception as exc:
            log.exception("request %s: the model raised", request_id)
            raise ModelFailed(
                f"the model failed on this request: {type(exc).__name__}: {_short(exc)} "
                f"(request {request_id})"
            ) from None

    async def _invoke_handler(
        self,
        servable: Servable,
        body: bytes,
        content_type: str,
        accept: str,
        request_id: str,
    ) -> tuple[int, bytes, bytes]:
        handler = servable.handler
        assert handler is not None
        # No input_fn/output_fn: the server's own formats apply, with their 415/406.
        kind = content_type if handler.input_fn else codecs.require_content_type(content_type)
        reply_type = (accept or codecs.JSON) if handler.output_fn else codecs.choose_accept(accept)
        if reply_type == "*/*":
            reply_type = codecs.JSON

        def run() -> tuple[bytes, str]:
            if handler.input_fn is not None:
                try:
                    data = handler.input_fn(body, kind)
                except Exception as exc:
                    raise InvalidInput(
                        f"input_fn refused the request: {type(exc).__name__}: {_short(exc)}"
                    ) from None
            else:
                data = codecs.decode(body, kind, servable.schema)
            model = servable.model
            try:
                prediction = (
                    handler.predict_fn(data, model)
                    if handler.predict_fn is not None
                    else model.predict(data)
                )
            except REJECTS_INPUT as exc:
                raise _rejected(exc) from None
            if handler.output_fn is not None:
                return normalise_output(handler.output_fn(prediction, reply_type), reply_type)
            return codecs.encode(np.asarray(prediction), reply_type), reply_type

        loop = asyncio.get_running_loop()
        try:
            out, out_type = await loop.run_in_executor(self.executor, run)
        except ModelyardError:
            raise
        except Exception as exc:
            log.exception("request %s: the handler raised", request_id)
            raise ModelFailed(
                f"the handler failed on this request: {type(exc).__name__}: {_short(exc)} "
                f"(request {request_id})"
            ) from None
        return 200, out, out_type.encode("latin-1", "replace")

    # ----------------------------------------------------------------- OIP v2

    async def _v2_model(
        self,
        method: str,
        path: str,
        headers: dict[bytes, bytes],
        receive: Receive,
        request_id: str,
    ) -> tuple[int, bytes, bytes]:
        parts = path.rstrip("/").split("/")[3:]  # after "", "v2", "models"
        name, rest = parts[0], parts[1:]
        if name != self.settings.name:
            raise NotFound(
                f"model {name!r} is not served here (this server serves {self.settings.name!r})"
            )
        if len(rest) >= 2 and rest[0] == "versions":
            if rest[1] != self.settings.version:
                raise NotFound(
                    f"model {name!r} has no version {rest[1]!r} here "
                    f"(this server serves version {self.settings.version!r})"
                )
            rest = rest[2:]
        if not rest:
            _allow(method, "GET", path)
            return 200, codecs.dumps(oip.model_metadata(self._loaded())), _JSON
        if rest == ["ready"]:
            _allow(method, "GET", path)
            ready = self.servable is not None
            body = orjson.dumps({"name": name, "ready": ready})
            return (200 if ready else 503), body, _JSON
        if rest == ["infer"]:
            _allow(method, "POST", path)
            return await self._v2_infer(headers, receive, request_id)
        raise NotFound(f"no route {path!r}")

    async def _v2_infer(
        self, headers: dict[bytes, bytes], receive: Receive, request_id: str
    ) -> tuple[int, bytes, bytes]:
        servable = self._loaded()
        content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
        # the body is read as JSON whatever an unknown type says (curl -d sends a form
        # type); only the other formats that /invocations reads are refused here
        if codecs.media_type(content_type) in (codecs.CSV, codecs.JSONLINES, codecs.NPY):
            raise UnsupportedMediaType(
                f"Content-Type {content_type!r}: the v2 infer route takes application/json"
            )
        body = await self._read_body(headers, receive)
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"malformed JSON: {exc}") from None
        rows, wanted, given_id = oip.parse_infer(request, servable)
        outputs = []
        for name in wanted:
            kind = "predict_proba" if name == oip.PROBA else "predict"
            values = await self._predict(servable, rows, kind, request_id)
            outputs.append(oip.output_tensor(name, values))
        reply = {
            "model_name": servable.name,
            "model_version": servable.version,
            "id": given_id if given_id is not None else request_id,
            "outputs": outputs,
        }
        return 200, codecs.dumps(reply), _JSON


def _allow(method: str, allowed: str, path: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise MethodNotAllowed(f"{method} is not allowed on {path}; use {allowed}")


def _error_body(exc: ModelyardError, request_id: str, v2: bool) -> bytes:
    body: dict[str, Any] = {"error": exc.message}
    if not v2:
        body["code"] = exc.code
        if exc.details:
            body["details"] = exc.details
    body["request_id"] = request_id
    return codecs.dumps(body)


def _rejected(exc: Exception) -> InputRejected:
    return InputRejected(f"the model refused this input: {type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text[:500] if text else repr(exc)


def build_app(model: Any, settings: ServerSettings | None = None) -> ModelServer:
    """An ASGI app serving ``model``: a loaded model (``modelyard.flavors.LoadedModel`` or
    anything with ``predict``, ``flavor`` and ``descriptor.signature``) or a Servable.

    The ONNX fast path is tried here (unless ``settings.use_onnx`` is false), so the app
    is ready as soon as it is built.
    """
    settings = settings or ServerSettings()
    servable = model if isinstance(model, Servable) else servable_from_model(model, settings)
    return ModelServer(settings, servable)
