"""MLflow's error body (``{"error_code": ..., "message": ...}``) and HTTP statuses."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from modelyard.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    ModelyardError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    Unauthenticated,
    invalid_input_from,
)

# The codes MLflow's client knows, with the statuses MLflow's server gives them.
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
STATUS = {
    INVALID_PARAMETER_VALUE: 400,
    RESOURCE_ALREADY_EXISTS: 400,
    RESOURCE_DOES_NOT_EXIST: 404,
    ENDPOINT_NOT_FOUND: 404,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 413,
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
}


class MlflowError(Exception):
    """An error to answer in MLflow's shape."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 500)


def invalid(message: str) -> MlflowError:
    return MlflowError(INVALID_PARAMETER_VALUE, message)


def from_exception(exc: Exception) -> MlflowError:
    """MLflow's code for a modelyard error (or a request that failed validation)."""
    if isinstance(exc, MlflowError):
        return exc
    if isinstance(exc, ValidationError):
        exc = invalid_input_from(exc)
    if isinstance(exc, NotFound):
        return MlflowError(RESOURCE_DOES_NOT_EXIST, exc.message)
    if isinstance(exc, AlreadyExists):
        return MlflowError(RESOURCE_ALREADY_EXISTS, exc.message)
    # MLflow answers INVALID_PARAMETER_VALUE where modelyard says Conflict (a param that
    # would change, a run that has ended): both are the caller's to fix, and a 4xx keeps
    # the client from retrying.
    if isinstance(exc, (InvalidInput, Conflict)):
        return MlflowError(INVALID_PARAMETER_VALUE, exc.message)
    if isinstance(exc, Unauthenticated):
        return MlflowError("UNAUTHENTICATED", exc.message)
    if isinstance(exc, PermissionDenied):
        return MlflowError("PERMISSION_DENIED", exc.message)
    if isinstance(exc, PayloadTooLarge):
        return MlflowError("RESOURCE_EXHAUSTED", exc.message)
    if isinstance(exc, ModelyardError) and exc.status == 503:
        return MlflowError("TEMPORARILY_UNAVAILABLE", exc.message)
    if isinstance(exc, ModelyardError):
        return MlflowError("INTERNAL_ERROR", exc.message)
    return MlflowError("INTERNAL_ERROR", "internal error")


def error_response(error: MlflowError) -> JSONResponse:
    body: dict[str, Any] = {"error_code": error.code, "message": error.message}
    return JSONResponse(body, status_code=error.status)
