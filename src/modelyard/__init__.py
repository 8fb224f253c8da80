"""modelyard: a self-hosted machine-learning platform.

``import modelyard as my``, then ``client = my.connect()``: embedded (in-process, no
server) by default, remote when ``MODELYARD_URL`` is set or a URL is passed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from modelyard.client.sdk import Client, connect
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
