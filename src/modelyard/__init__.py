"""modelyard: a self-hosted machine-learning platform.

``import modelyard as my``, then ``client = my.connect()``: embedded (in-process, no
server) by default, remote when ``MODELYARD_URL`` is set or a URL is passed.

The SDK names are loaded on first use, so a job's process that only needs
``modelyard.jobs.log_metric`` (or a built-in algorithm module) does not pay for importing
the whole client stack.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from modelyard.errors import (
    AlreadyExists,
    ArtifactCorrupted,
    Conflict,
    InvalidInput,
    ModelyardError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    Unauthenticated,
)

if TYPE_CHECKING:
    from modelyard.client.estimators import Estimator, Processor
    from modelyard.client.sdk import Client, connect
    from modelyard.client.transform import Transformer

_LAZY = {
    "Client": "modelyard.client.sdk",
    "connect": "modelyard.client.sdk",
    "Estimator": "modelyard.client.estimators",
    "Processor": "modelyard.client.estimators",
    "Transformer": "modelyard.client.transform",
}

__all__ = [
    "AlreadyExists",
    "ArtifactCorrupted",
    "Client",
    "Conflict",
    "Estimator",
    "InvalidInput",
    "ModelyardError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "Processor",
    "Transformer",
    "Unauthenticated",
    "__version__",
    "connect",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
