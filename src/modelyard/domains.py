"""The list of domains. Adding a domain: write its package, then add it here.

Each entry is a module exposing ``ops`` (an :class:`OperationSet`); importing it also
registers its tables with the shared metadata, which the migrations compare against. A
module may also declare ``background``: factories ``f(runtime) -> service`` of
long-running services (``start()``/``stop()``) such as the jobs controller, and register
job kinds at import (:func:`modelyard.jobs.kinds.register_kind`, as the transform domain
does), so every kind is known once the runtime has imported the domains.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

from modelyard.core.operations import Operation

SERVICE_MODULES = (
    "modelyard.security.service",
    "modelyard.artifacts.service",
    "modelyard.data.service",
    "modelyard.jobs.service",
    "modelyard.tracking.service",
    "modelyard.lineage.service",
    "modelyard.registry.service",
    "modelyard.transform.service",
    "modelyard.endpoints.service",
)


@cache
def operations() -> dict[str, Operation[Any, Any]]:
    """Every declared operation by name (imports the domains on first call)."""
    found: dict[str, Operation[Any, Any]] = {}
    for module_name in SERVICE_MODULES:
        module = importlib.import_module(module_name)
        for op in module.ops.operations:
            if op.name in found:
                raise RuntimeError(f"operation {op.name} declared twice")
            found[op.name] = op
    return found


def background_factories() -> list[Callable[[Any], Any]]:
    """The ``background`` service factories the domains declare, in domain order."""
    factories: list[Callable[[Any], Any]] = []
    for module_name in SERVICE_MODULES:
        factories.extend(getattr(importlib.import_module(module_name), "background", ()))
    return factories
