"""Errors particular to the model server, on top of :mod:`modelyard.errors`."""

from __future__ import annotations

from modelyard.errors import InvalidInput, ModelyardError


class NotAcceptable(ModelyardError):
    """The ``Accept`` header names no format the server can write."""

    status = 406
    code = "not_acceptable"


class SignatureMismatch(InvalidInput):
    """The body parsed, but does not fit the model's signature (width, column, type)."""

    status = 422
    code = "signature_mismatch"


class InputRejected(InvalidInput):
    """The body was read, but the model (or a handler's ``predict_fn``) refused the data:
    it raised ``ValueError`` or ``TypeError`` on it (a wrong number of features, no rows,
    values of the wrong type). The caller's input, not the service, is at fault."""

    status = 422
    code = "input_rejected"


# What a model or ``predict_fn`` raises for data it cannot take (Python's convention for an
# argument of the wrong value or type); anything else it raises is the model's failure.
REJECTS_INPUT: tuple[type[Exception], ...] = (ValueError, TypeError)


class ModelFailed(ModelyardError):
    """The model (or a handler function) raised while answering a request."""

    status = 500
    code = "model_error"


class ModelNotReady(ModelyardError):
    """The model is still loading, or failed to load (the message says which and why)."""

    status = 503
    code = "model_not_ready"


class MethodNotAllowed(ModelyardError):
    status = 405
    code = "method_not_allowed"


class NotTheRouter(ModelyardError):
    """A replica's request without its secret: only the endpoint's router may call it."""

    status = 403
    code = "forbidden"


class MisdirectedHost(ModelyardError):
    """A ``Host`` header naming a host this server does not answer for (DNS rebinding)."""

    status = 421
    code = "invalid_host"
