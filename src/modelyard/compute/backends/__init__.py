"""Compute backends, chosen by the scheme of a job's ``backend`` URL.

``local`` runs attempts as supervised subprocesses on the control plane's machine. A new
backend is a :class:`~modelyard.compute.backends.base.ComputeBackend` subclass in its own
module plus one line in :data:`BACKENDS` (loaded lazily, so an optional engine such as
Ray is imported only when a job uses it).
"""

from __future__ import annotations

import importlib

from modelyard.compute.backends.base import ComputeBackend
from modelyard.errors import InvalidInput

BACKENDS: dict[str, str] = {
    "local": "modelyard.compute.backends.local:LocalBackend",
    "ray": "modelyard.compute.backends.ray:RayBackend",
}


def scheme_of(url: str) -> str:
    """``local`` → ``local``; ``ray://head:10001`` → ``ray``."""
    return url.split("://", 1)[0]


def backend_class(url: str) -> type[ComputeBackend]:
    """The class for ``url``; :class:`InvalidInput` naming the known schemes otherwise."""
    scheme = scheme_of(url)
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(sorted(BACKENDS))
        raise InvalidInput(f"compute backend {url!r} is not known; use one of: {known}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(
            f"compute backend {scheme!r} needs an optional dependency that is missing: {exc}"
        ) from exc
    cls: type[ComputeBackend] = getattr(module, class_name)
    return cls
