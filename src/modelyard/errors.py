"""One error hierarchy for the whole platform, each class mapped to an HTTP status.

Every error a client can cause is a subclass of :class:`ModelyardError` with a 4xx
status and a message naming the offending value (and, where there is a fixed set, the
accepted ones). The remote client turns the JSON error body back into the same class,
so embedded and remote callers catch the same exceptions.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ModelyardError(Exception):
    """Base class. ``code`` is stable and travels over HTTP; ``status`` is the HTTP status."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(ModelyardError):
    """The request is malformed or names something impossible."""

    status = 400
    code = "invalid_input"


class UntrustedModel(InvalidInput):
    """A saved model needs something the server does not trust: a type outside the
    allow-list, pickle without permission, or a file whose digest the registry does not
    vouch for. Nothing of it was executed."""

    code = "untrusted_model"


class Unauthenticated(ModelyardError):
    status = 401
    code = "unauthenticated"


class PermissionDenied(ModelyardError):
    status = 403
    code = "permission_denied"


class NotFound(ModelyardError):
    status = 404
    code = "not_found"


class AlreadyExists(ModelyardError):
    """A create names something that exists already (a model, experiment, endpoint, user…).

    Every domain raises this one for a duplicate, never :class:`Conflict`, so callers
    (and the MLflow API's ``RESOURCE_ALREADY_EXISTS``) can tell "it is there" from "its
    state forbids this"."""

    status = 409
    code = "already_exists"


class Conflict(ModelyardError):
    """The request is valid but the current state does not allow it (a run that ended, a
    param that would change, a version that moved on); a duplicate is :class:`AlreadyExists`."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ModelyardError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ModelyardError):
    status = 415
    code = "unsupported_media_type"


class ArtifactCorrupted(ModelyardError):
    """A stored object does not match its digest (bit rot, truncation, tampering).

    It is never served; the operator has to restore it from a copy.
    """

    status = 500
    code = "artifact_corrupted"


class ConfigurationError(ModelyardError):
    """The platform itself is configured wrongly (not the caller's fault)."""

    status = 500
    code = "configuration_error"


class ServiceUnavailable(ModelyardError):
    status = 503
    code = "service_unavailable"


def _all_subclasses(cls: type[ModelyardError]) -> list[type[ModelyardError]]:
    out: list[type[ModelyardError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_from_dict(status: int, body: dict[str, Any]) -> ModelyardError:
    """Rebuild the exception a server raised from its JSON body (used by the remote client)."""
    code = body.get("code")
    message = str(body.get("message") or f"HTTP {status}")
    details = body.get("details") if isinstance(body.get("details"), dict) else None
    known: list[type[ModelyardError]] = [ModelyardError, *_all_subclasses(ModelyardError)]
    for cls in known:
        if cls.code == code:
            return cls(message, details=details)
    for cls in _all_subclasses(ModelyardError):
        if cls.status == status:
            return cls(message, details=details)
    return ModelyardError(message, details=details)


def describe_validation_errors(errors: list[Any]) -> tuple[str, list[dict[str, str]]]:
    """A one-line message and a list of ``{field, problem}`` from pydantic-style errors."""
    problems = []
    for err in errors:
        loc = ".".join(
            str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "payload")
        )
        problem = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":  # FastAPI's: say what is wrong, not where
            loc, problem = "body", f"not valid JSON: {err.get('ctx', {}).get('error', problem)}"
        problems.append({"field": loc, "problem": problem})
    summary = "; ".join(f"{p['field'] or 'request'}: {p['problem']}" for p in problems[:5])
    return f"invalid request: {summary}", problems


def invalid_input_from(exc: Exception) -> InvalidInput:
    """Turn a pydantic ``ValidationError`` raised while building a request into InvalidInput."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    message, problems = describe_validation_errors(list(errors))
    return InvalidInput(message, details={"problems": problems})
