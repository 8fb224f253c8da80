"""Two transports for the same operations: in-process and HTTP.

Both take an operation name and its input model and return its output model, raising
the same :mod:`modelyard.errors` classes. The embedded transport round-trips input and
output through JSON exactly as the HTTP one does, so a value that cannot cross the wire
fails in embedded mode too (the local backend is not a shortcut).
"""

from __future__ import annotations

import abc
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote
from urllib.request import getproxies

import httpx
from pydantic import BaseModel, TypeAdapter

from modelyard.client import wire
from modelyard.core.operations import Operation, Principal, ProgressFn, StreamResult, _no_progress
from modelyard.errors import (
    ArtifactCorrupted,
    ModelyardError,
    ServiceUnavailable,
    error_from_dict,
)

T = TypeVar("T")
# Answers from a proxy or a server that could not serve the request (restarting, over
# capacity): worth sending a request that is safe to repeat again.
RETRY_STATUSES = frozenset({502, 503, 504})


class Transport(abc.ABC):
    """Calls operations by name."""

    def operation(self, name: str) -> Operation[Any, Any]:
        from modelyard.domains import operations

        return operations()[name]

    @abc.abstractmethod
    def call(
        self,
        name: str,
        req: BaseModel,
        *,
        stream: BinaryIO | None = None,
        progress: ProgressFn = _no_progress,
    ) -> Any:
        """Run operation ``name``; a ``stream_out`` operation returns a :class:`StreamResult`."""

    def close(self) -> None:
        return None


def _roundtrip(value: Any, output: Any) -> Any:
    if isinstance(value, BaseModel):
        adapter: TypeAdapter[Any] = TypeAdapter(output)
        return adapter.validate_json(value.model_dump_json())
    return value


class EmbeddedTransport(Transport):
    """Runs operations in this process against the local stores."""

    def __init__(self, runtime: Any, principal: Principal) -> None:
        # ``runtime`` is a modelyard.runtime.Runtime (typed loosely to keep this module
        # importable without opening any store).
        self.runtime = runtime
        self.principal = principal

    def call(
        self,
        name: str,
        req: BaseModel,
        *,
        stream: BinaryIO | None = None,
        progress: ProgressFn = _no_progress,
    ) -> Any:
        op = self.operation(name)
        wire_req = op.input.model_validate_json(req.model_dump_json())
        result = self.runtime.execute(
            op, wire_req, self.principal, origin="embedded", stream=stream, progress=progress
        )
        if op.stream_out:
            return result
        return _roundtrip(result, op.output)

    def close(self) -> None:
        self.runtime.close()


class RemoteTransport(Transport):
    """Calls a modelyard server over HTTP(S).

    A request that is safe to repeat (a read, or a write with an idempotency key, which
    the server runs once) is sent again, up to ``retries`` times with exponential backoff
    from ``backoff_s``, when the connection fails or breaks before the answer arrives or
    the answer is a 502/503/504 (not when it timed out). Any request but an upload is sent
    again when the connection could not be opened at all (nothing reached the server).
    ``transport`` is httpx's (a proxy, or a test's); the default connects directly.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 300.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        headers = {"user-agent": "modelyard-sdk"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=_tls_context(self.url, transport),
        )

    def operation(self, name: str) -> Operation[Any, Any]:
        # From the index of the declarations, so that calling a server does not import
        # the server's side (its stores and data engines); see modelyard.client.wire.
        return wire.operation(name)

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            body = response.json()
        except ValueError:
            body = {"message": f"HTTP {response.status_code}: {response.text[:200]}"}
        if not isinstance(body, dict):
            body = {"message": f"HTTP {response.status_code}"}
        raise error_from_dict(response.status_code, body)

    def call(
        self,
        name: str,
        req: BaseModel,
        *,
        stream: BinaryIO | None = None,
        progress: ProgressFn = _no_progress,
    ) -> Any:
        op = self.operation(name)
        if op.body_in_json:
            # The same split as Operation.split, with the body serialised by pydantic's
            # encoder straight to JSON bytes (the exact bytes the embedded transport
            # round-trips; a large metric batch would spend most of its time in json.dumps).
            path_values = req.model_dump(mode="json", include=set(op.path_params))
            query: dict[str, Any] = {}
            body = req.model_dump_json(exclude=set(op.path_params)).encode()
        else:
            path_values, query, _ = op.split(req)
        path = op.path
        for key, value in path_values.items():
            path = path.replace("{" + key + "}", quote(str(value), safe=""))
        url = "/api/v1" + path
        kwargs: dict[str, Any] = {"params": query}
        if op.stream_in:
            kwargs["content"] = _iter_file(stream) if stream is not None else b""
            kwargs["headers"] = {"content-type": "application/octet-stream"}
        elif op.body_in_json:
            kwargs["content"] = body
            kwargs["headers"] = {"content-type": "application/json"}
        try:
            if op.stream_out:
                response = self.http.send(
                    self.http.build_request(op.method, url, **kwargs), stream=True
                )
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                return StreamResult(
                    chunks=_iter_response(response, self._broken_off),
                    size=int(response.headers["content-length"])
                    if "content-length" in response.headers
                    else None,
                    media_type=response.headers.get("content-type", "application/octet-stream"),
                    headers=dict(response.headers),
                )
            response = self._send(op, req, url, kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"cannot reach modelyard at {self.url}: {exc}") from exc
        self._raise_for(response)
        adapter: TypeAdapter[Any] = TypeAdapter(op.output)
        return adapter.validate_json(response.content)

    def _send(
        self, op: Operation[Any, Any], req: BaseModel, url: str, kwargs: dict[str, Any]
    ) -> httpx.Response:
        """Send, and send again what is safe to repeat (see the class docstring)."""
        repeatable = not op.stream_in and (
            op.method == "GET" or getattr(req, "idempotency_key", None) is not None
        )
        # A read timeout is not retried: the server may still be working on the request,
        # and a caller who waited ``timeout`` should hear so now, not after several more.
        attempt = 0
        while True:
            last = attempt >= self.retries
            try:
                response = self.http.request(op.method, url, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout):  # nothing reached the server
                if last or op.stream_in:
                    raise
            except (httpx.NetworkError, httpx.RemoteProtocolError):  # cut off on the way
                if last or not repeatable:
                    raise
            else:
                if last or not repeatable or response.status_code not in RETRY_STATUSES:
                    return response
            time.sleep(self.backoff_s * 2**attempt)
            attempt += 1

    def _broken_off(self, response: httpx.Response, exc: Exception) -> ModelyardError:
        """The error for a download cut short: the server cuts it when it finds the object
        damaged further in (it never sends unverified bytes), and then says so on ``stat``."""
        digest = response.headers.get("x-modelyard-digest")
        if digest:
            stat = self.operation("artifacts.stat")
            try:
                self.call("artifacts.stat", stat.input(digest=digest))
            except ArtifactCorrupted as corrupted:
                return corrupted
            except (ModelyardError, ValueError):
                pass
        return ModelyardError(f"download broke off: {exc}")

    def close(self) -> None:
        self.http.close()


def _tls_context(url: str, transport: httpx.BaseTransport | None) -> ssl.SSLContext | bool:
    """What ``httpx.Client(verify=...)`` gets: ``True`` (httpx loads the CA bundle, ~20 ms
    of a CLI command's start), except where no TLS connection can be made: a plain
    ``http://`` server reached directly (no proxy configured: httpx would connect to an
    ``https://`` proxy with this context). The client only sends requests under its base URL
    and follows no redirect, so there it gets a context that trusts no certificate at all:
    should it ever be used, the handshake fails rather than going unverified.
    """
    if transport is not None or not url.lower().startswith("http://"):
        return True
    proxies = getproxies()
    if any(proxies.get(scheme) for scheme in ("http", "https", "all")):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _iter_file(stream: BinaryIO, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := stream.read(chunk_size):
        yield chunk


def _iter_response(
    response: httpx.Response, broken_off: Callable[[httpx.Response, Exception], ModelyardError]
) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes(1 << 20)
    except httpx.HTTPError as exc:
        response.close()
        raise broken_off(response, exc) from exc
    finally:
        response.close()
