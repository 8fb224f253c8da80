"""Built-in algorithms: ``algorithm="<name>"`` runs ``python -m modelyard.algorithms.<name>``.

Every public module (or package with a ``__main__``) in ``modelyard.algorithms`` is an
algorithm honouring the container contract; names starting with ``_`` are helpers. They
are discovered without importing them, so listing them costs nothing.
"""

from __future__ import annotations

import importlib.util
import pkgutil

PACKAGE = "modelyard.algorithms"


def known_algorithms() -> list[str]:
    """Names of the built-in algorithms installed, sorted."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except ImportError:
        return []
    if spec is None or spec.submodule_search_locations is None:
        return []
    return sorted(
        m.name
        for m in pkgutil.iter_modules(list(spec.submodule_search_locations))
        if not m.name.startswith("_")
    )


def module_of(name: str) -> str:
    return f"{PACKAGE}.{name}"
