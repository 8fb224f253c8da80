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
