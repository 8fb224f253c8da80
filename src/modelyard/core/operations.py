"""Operations: each platform action is declared once and served by every transport.

A domain's ``service.py`` declares its operations with :meth:`OperationSet.operation`::

    ops = OperationSet("datasets")

    @ops.operation("GET", "/datasets/{name}", permission="datasets.read")
    def get_dataset(ctx: Context, req: GetDataset) -> Dataset: ...

The input and output types come from the function's annotations (pydantic models). The
HTTP route (``server/``), the remote client (``client/``) and the embedded client are all
derived from this declaration, so they cannot drift apart. The rules for turning an input
model into an HTTP request are in :meth:`Operation.split`:

* fields named in the path template come from the path;
* for GET and DELETE the other fields are query parameters (they must be scalars);
* for POST, PUT and PATCH the other fields are the JSON body;
* a ``stream_in`` operation also receives the raw request body as a binary stream,
  and a ``stream_out`` operation returns a :class:`StreamResult` instead of JSON.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    # Only annotations of Context: the remote client imports this module for Operation and
    # StreamResult, and must not load SQLAlchemy or fsspec to do so.
    from sqlalchemy.orm import Session

    from modelyard.config import Settings
    from modelyard.core.artifacts import ArtifactStore

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out")

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
_PATH_PARAM = re.compile(r"{([a-z_][a-z0-9_]*)}")
_PERMISSION = re.compile(r"^[a-z_]+\.(read|write|approve|deploy|admin)$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user with one role, resolved by the security domain."""

    user: str
    role: str
    permissions: frozenset[str]
    token_id: str | None = None

    def can(self, permission: str) -> bool:
        domain = permission.split(".", 1)[0]
        return bool(
            {permission, "*", f"{domain}.*", f"*.{permission.split('.', 1)[1]}"} & self.permissions
        )


@dataclass(frozen=True)
class Progress:
    """A progress report from long work: ``done`` of ``total`` units (total may be unknown)."""

    task: str
    done: float = 0.0
    total: float | None = None


ProgressFn = Callable[[Progress], None]


def _no_progress(_: Progress) -> None:
    return None


@dataclass
class Context:
    """What an operation may use: the caller, its transaction, the artifact store.

    The operation's transaction opens on first use of :attr:`session`, so an operation
    can do slow work (reading artifacts, profiling) before it takes the write lock;
    :meth:`read` gives a short read-only transaction for what that slow work needs.
    """

    principal: Principal
    artifacts: ArtifactStore
    settings: Settings
    origin: str
    request_id: str
    open_session: Callable[[], Session]
    open_read: Callable[[], AbstractContextManager[Session]]
    progress: ProgressFn = _no_progress
    # Set by the operation to name what it changed; recorded in the audit event.
    audit_target: str | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def session(self) -> Session:
        """The operation's transaction (committed with the audit event when it returns)."""
        return self.open_session()

    def read(self) -> AbstractContextManager[Session]:
        """A separate short read-only transaction, for use before :attr:`session`."""
        return self.open_read()

    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        """Queue a domain event; it is written to the outbox in the same transaction."""
        self.events.append((event_type, payload))


@dataclass
class StreamResult:
    """Output of a ``stream_out`` operation: bytes produced lazily, plus their metadata."""

    chunks: Iterator[bytes]
    size: int | None = None
    media_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    #: The name a browser should save the content under (served as an attachment).
    filename: str | None = None


@dataclass(frozen=True)
class Operation(Generic[In, Out]):
    name: str
    func: Callable[..., Out]
    input: type[In]
    output: type[Any]
    permission: str
    method: str
    path: str
    mutating: bool
    summary: str
    stream_in: bool = False
    stream_out: bool = False
    # Inputs that need more than ``permission``: {field: {value: permission}} (moving the
    # ``production`` alias needs ``models.deploy``). Checked with ``permission``.
    stricter: dict[str, dict[str, str]] = field(default_factory=dict)

    def permissions_for(self, req: BaseModel | None) -> list[str]:
        """The permissions a call with ``req`` needs (``permission`` alone without one)."""
        needed = [self.permission]
        for name, by_value in self.stricter.items():
            value = getattr(req, name, None) if req is not None else None
            if isinstance(value, str) and value in by_value:
                needed.append(by_value[value])
        return needed

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def body_in_json(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH"} and not self.stream_in

    def split(self, req: BaseModel) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Split an input into (path params, query params, JSON body) by the rules above."""
        data = req.model_dump(mode="json", exclude_none=False)
        path = {k: data.pop(k) for k in self.path_params}
        if self.body_in_json:
            return path, {}, data
        return path, {k: v for k, v in data.items() if v is not None}, {}

    def call(self, ctx: Context, req: In, stream: BinaryIO | None = None) -> Out:
        if self.stream_in:
            if stream is None:
                raise TypeError(f"operation {self.name} needs a body stream")
            return self.func(ctx, req, stream)
        return self.func(ctx, req)


class OperationSet:
    """The operations of one domain; collected by ``modelyard.domains``."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.operations: list[Operation[Any, Any]] = []

    def operation(
        self,
        method: str,
        path: str,
        *,
        permission: str,
        mutating: bool | None = None,
        stream_in: bool = False,
        stream_out: bool = False,
        name: str | None = None,
        stricter: dict[str, dict[str, str]] | None = None,
    ) -> Callable[[Callable[..., Out]], Callable[..., Out]]:
        """Declare ``func(ctx, req[, stream]) -> output`` as an operation.

        ``mutating`` defaults to ``method != "GET"``; mutating operations run in a write
        transaction and always leave an audit event. ``stricter`` names input values that
        need a further permission (``{"alias": {"production": "models.deploy"}}``).
        """
        method = method.upper()
        if method not in HTTP_METHODS:
            raise ValueError(f"unknown HTTP method {method!r}")
        for perm in [permission, *(p for v in (stricter or {}).values() for p in v.values())]:
            if not _PERMISSION.fullmatch(perm):
                raise ValueError(
                    f"permission {perm!r} is not '<domain>.<read|write|approve|deploy|admin>'"
                )

        def register(func: Callable[..., Out]) -> Callable[..., Out]:
            hints = typing.get_type_hints(func)
            params = [p for p in func.__code__.co_varnames[: func.__code__.co_argcount]]
            if len(params) < 2:
                raise TypeError(f"{func.__qualname__} must take (ctx, req)")
            input_type = hints[params[1]]
            output_type = hints["return"]
            if not (isinstance(input_type, type) and issubclass(input_type, BaseModel)):
                raise TypeError(f"{func.__qualname__}: input must be a pydantic model")
            missing = [p for p in _PATH_PARAM.findall(path) if p not in input_type.model_fields]
            if missing:
                raise TypeError(f"{func.__qualname__}: path params {missing} not in {input_type}")
            unknown = [f for f in stricter or {} if f not in input_type.model_fields]
            if unknown:
                raise TypeError(
                    f"{func.__qualname__}: stricter fields {unknown} not in {input_type}"
                )
            op: Operation[Any, Any] = Operation(
                name=name or f"{self.domain}.{func.__name__}",
                func=func,
                input=input_type,
                output=output_type,
                permission=permission,
                method=method,
                path=path,
                mutating=(method != "GET") if mutating is None else mutating,
                summary=(func.__doc__ or func.__name__).strip().splitlines()[0],
                stream_in=stream_in,
                stream_out=stream_out,
                stricter=dict(stricter or {}),
            )
            self.operations.append(op)
            return func

        return register
