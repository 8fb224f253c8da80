"""Request bodies as JSON, with a nesting limit: one parser for every route.

Python's ``json`` recurses once per level and raises ``RecursionError`` (not a
``ValueError``) near a thousand levels, and a value that parses a few levels short of that
still overflows later, in validation, serialisation or the database driver. No request
this server understands nests more than a handful of levels, so a body deeper than
:data:`MAX_DEPTH` is refused where it is read, as malformed JSON (400), before anything
else looks at it. The native routes read bodies through :class:`JsonRoute`, the MLflow
routes through :func:`loads`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

MAX_DEPTH = 64


def loads(raw: bytes | str) -> Any:
    """The JSON value of ``raw``; :class:`json.JSONDecodeError` (a ``ValueError``) when it is
    not JSON, not UTF-8, or nested deeper than :data:`MAX_DEPTH` arrays and objects."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:  # bytes that are not UTF-8/16/32
        raise json.JSONDecodeError(f"not UTF-8 text ({exc})", "", 0) from None
    if _deeper_than(value, MAX_DEPTH):
        raise _too_deep()
    return value


def _too_deep() -> json.JSONDecodeError:
    return json.JSONDecodeError(
        f"nested deeper than {MAX_DEPTH} levels of arrays and objects", "", 0
    )


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` containers (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


class _Request(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """An ``APIRoute`` whose JSON body is read by :func:`loads`. FastAPI answers the
    ``JSONDecodeError`` it raises as a validation error (400, ``invalid_input``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(_Request(request.scope, request.receive))

        return route_handler
