"""The runtime: opens the stores and executes operations with auth and audit.

Both transports end here. The embedded client calls :meth:`Runtime.execute` in-process;
the HTTP server calls it from a route derived from the same operation. So the rules that
matter — permission checks, one transaction per operation, an audit event for every
mutation (including refused and failed ones) — are enforced in one place.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, BinaryIO, Protocol

from pydantic import BaseModel, TypeAdapter
from sqlalchemy.orm import Session

from modelyard.config import Settings
from modelyard.core import idempotency_store
from modelyard.core.artifacts import ArtifactStore, open_store
from modelyard.core.db import Database
from modelyard.core.events import write_events
from modelyard.core.idempotency import Idempotent, request_digest
from modelyard.core.ids import new_id
from modelyard.core.operations import Context, Operation, Principal, ProgressFn, _no_progress
from modelyard.domains import background_factories, operations
from modelyard.errors import Conflict, ModelyardError, PermissionDenied, Unauthenticated
from modelyard.migrations import upgrade
from modelyard.security.refusals import RefusalLimiter
from modelyard.security.service import authenticate, local_principal, record_audit

# The actor of an audit event for a request that proved no identity.
ANONYMOUS = Principal(user="anonymous", role="none", permissions=frozenset())

log = logging.getLogger("modelyard")


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(output: Any) -> TypeAdapter[Any]:
    """The (cached) adapter that stores and rebuilds an operation's result."""
    adapter = _ADAPTERS.get(output)
    if adapter is None:
        adapter = _ADAPTERS[output] = TypeAdapter(output)
    return adapter


class BackgroundService(Protocol):
    """A long-running service a domain declares (e.g. the jobs controller)."""

    def start(self) -> object: ...

    def stop(self) -> None: ...


class Runtime:
    """Open stores for one settings object. Thread-safe; share one per process."""

    def __init__(self, settings: Settings, *, migrate: bool = True) -> None:
        self.settings = settings
        self.db = Database(settings.db_url)
        if migrate:
            upgrade(self.db.engine)
        self.artifacts: ArtifactStore = open_store(settings.artifacts_url)
        self.operations = operations()
        self.refusals = RefusalLimiter()
        self._background: list[BackgroundService] | None = None
        self._background_lock = threading.Lock()

    def start_background(self) -> None:
        """Start the domains' background services (idempotent; ``modelyard up`` calls it)."""
        with self._background_lock:
            if self._background is None:
                self._background = [factory(self) for factory in background_factories()]
                for service in self._background:
                    service.start()

    def stop_background(self) -> None:
        with self._background_lock:
            services, self._background = self._background or [], None
        for service in reversed(services):
            service.stop()

    def close(self) -> None:
        self.stop_background()
        self.db.dispose()

    def principal(self, token: str | None) -> Principal:
        """Resolve a bearer token. Without auth, no token means the local admin user."""
        if token:
            with self.db.transaction(write=False) as session:
                return authenticate(session, token)
        if self.settings.auth:
            raise Unauthenticated(
                "this server requires an API token: send 'Authorization: Bearer <token>' "
                "(create one with 'modelyard tokens create')"
            )
        return local_principal()

    def authenticate(
        self, token: str | None, *, origin: str, request_id: str, operation: str
    ) -> Principal:
        """:meth:`principal` for a request from ``origin``; a refusal (no token where auth
        is on, or a bad one) is audited as ``unauthenticated`` against ``operation`` (an
        operation's name, or the MLflow route), at most ``RefusalLimiter.per_minute``
        events per source per minute (the rest counted in the next one)."""
        try:
            return self.principal(token)
        except Unauthenticated as exc:
            suppressed = self.refusals.admit(origin)
            if suppressed is not None:
                detail: dict[str, Any] = {"message": exc.message}
                if suppressed:
                    detail["suppressed"] = suppressed
                self._audit(ANONYMOUS, operation, None, origin, request_id, exc.code, detail)
            raise

    def authorize(
        self,
        op: Operation[Any, Any],
        principal: Principal,
        *,
        origin: str,
        request_id: str,
        req: BaseModel | None = None,
    ) -> None:
        """Raise :class:`PermissionDenied` (and audit the refusal) unless ``principal`` may
        call ``op`` (with ``req``, for the inputs that need more: ``op.stricter``). The
        server also calls this before it reads an upload's body."""
        for permission in op.permissions_for(req):
            if not principal.can(permission):
                self._audit_failure(op, principal, origin, request_id, None, "permission_denied")
                raise PermissionDenied(
                    f"{principal.user!r} (role {principal.role}) may not call {op.name}"
                    + ("" if permission == op.permission else " with this input")
                    + f": it needs {permission!r}"
                )

    def execute(
        self,
        op: Operation[Any, Any],
        req: BaseModel,
        principal: Principal,
        *,
        origin: str,
        request_id: str | None = None,
        stream: BinaryIO | None = None,
        progress: ProgressFn = _no_progress,
    ) -> Any:
        """Run ``op`` as ``principal`` in one transaction; audit it if it mutates.

        An input with an ``idempotency_key`` (``core/idempotency.py``) is run once: a
        repeat within the window returns the first result and writes nothing."""
        request_id = request_id or new_id("req")
        self.authorize(op, principal, origin=origin, request_id=request_id, req=req)
        key = req.idempotency_key if isinstance(req, Idempotent) else None
        if key is None or not op.mutating:
            return self._run(op, req, principal, origin, request_id, stream, progress, None)
        digest = request_digest(req)
        found = self._replay(op, principal, key, digest, origin, request_id)
        if found is not None:
            return found
        output = _adapter(op.output)

        def remember(session: Session, result: Any) -> None:
            idempotency_store.remember(
                session,
                actor=principal.user,
                key=key,
                operation=op.name,
                digest=digest,
                result_json=output.dump_json(result).decode(),
            )

        try:
            return self._run(op, req, principal, origin, request_id, stream, progress, remember)
        except idempotency_store.KeyTaken:  # the same request, committed meanwhile
            found = self._replay(op, principal, key, digest, origin, request_id)
            if found is None:  # committed and expired at once: cannot happen in a window
                raise Conflict(f"idempotency key {key!r} is in use; try again") from None
            return found

    def _replay(
        self,
        op: Operation[Any, Any],
        principal: Principal,
        key: str,
        digest: str,
        origin: str,
        request_id: str,
    ) -> Any | None:
        """The stored result of an earlier call with ``key`` (audited as ``replayed``)."""
        try:
            with self.db.transaction(write=False) as session:
                found = idempotency_store.replay(
                    session,
                    actor=principal.user,
                    key=key,
                    operation=op.name,
                    digest=digest,
                    output=op.output,
                )
        except ModelyardError as exc:
            self._audit_failure(op, principal, origin, request_id, None, exc.code, exc.message)
            raise
        if found is not None:
            detail = {"idempotency_key": key}
            self._audit(principal, op.name, None, origin, request_id, "replayed", detail)
        return found

    def _run(
        self,
        op: Operation[Any, Any],
        req: BaseModel,
        principal: Principal,
        origin: str,
        request_id: str,
        stream: BinaryIO | None,
        progress: ProgressFn,
        remember: Callable[[Session, Any], None] | None,
    ) -> Any:
        ctx: Context | None = None
        try:
            # Leaving this block commits the operation's transaction; an exception
            # raised inside it (or by the commit itself) rolls it back.
            with ExitStack() as stack:
                session: Session | None = None

                def open_session() -> Session:
                    nonlocal session
                    if session is None:
                        session = stack.enter_context(self.db.transaction(write=op.mutating))
                    return session

                ctx = Context(
                    principal=principal,
                    artifacts=self.artifacts,
                    settings=self.settings,
                    origin=origin,
                    request_id=request_id,
                    open_session=open_session,
                    open_read=lambda: self.db.transaction(write=False),
                    progress=progress,
                )
                result = op.call(ctx, req, stream)
                if remember is not None:
                    remember(open_session(), result)
                if op.mutating:
                    record_audit(
                        open_session(),
                        principal=principal,
                        operation=op.name,
                        target=ctx.audit_target,
                        origin=origin,
                        result="ok",
                        request_id=request_id,
                    )
                if ctx.events:
                    write_events(open_session(), principal.user, ctx.events)
            return result
        except idempotency_store.KeyTaken:
            raise  # not a failure: the caller answers with the first call's result
        except ModelyardError as exc:
            target = ctx.audit_target if ctx else None
            self._audit_failure(op, principal, origin, request_id, target, exc.code, exc.message)
            raise
        except Exception as exc:
            target = ctx.audit_target if ctx else None
            self._audit_failure(
                op, principal, origin, request_id, target, "internal_error", repr(exc)
            )
            raise

    def _audit_failure(
        self,
        op: Operation[Any, Any],
        principal: Principal,
        origin: str,
        request_id: str,
        target: str | None,
        result: str,
        message: str | None = None,
    ) -> None:
        if not op.mutating:
            return
        detail = {"message": message} if message else {}
        self._audit(principal, op.name, target, origin, request_id, result, detail)

    def _audit(
        self,
        principal: Principal,
        operation: str,
        target: str | None,
        origin: str,
        request_id: str,
        result: str,
        detail: dict[str, Any],
    ) -> None:
        """Write one audit event in a transaction of its own (a refusal or a failure)."""
        try:
            with self.db.transaction() as session:
                record_audit(
                    session,
                    principal=principal,
                    operation=operation[:100],
                    target=target,
                    origin=origin,
                    result=result,
                    request_id=request_id,
                    detail=detail,
                )
        except Exception:  # the original error matters more than a failed audit write
            log.exception("could not write the audit event for %s", operation)
