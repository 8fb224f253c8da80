"""modelyard: a self-hosted machine-learning platform.

``import modelyard as my``, then ``client = my.connect()``: embedded (in-process, no
server) by default, remote when ``MODELYARD_URL`` is set or a URL is passed.

The SDK is loaded on first use of ``my.connect`` / ``my.Client``, so importing a small
part of the package (an algorithm entry point, the artifact store) stays light.
"""

from __future__ import annotations

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

__version__ = "0.1.0"

if TYPE_CHECKING:
    from modelyard.client.sdk import Client, connect

_LAZY = {"Client": "modelyard.client.sdk", "connect": "modelyard.client.sdk"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelyard' has no attribute {name!r}")


__all__ = [
    "AlreadyExists",
    "ArtifactCorrupted",
    "Client",
    "Conflict",
    "InvalidInput",
    "ModelyardError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "Unauthenticated",
    "__version__",
    "connect",
]
