"""The ``endpoints.invoke`` pseudo-operation: the permission check of the router's routes.

Invoking is not an operation (no JSON route, no transaction): the router's HTTP routes
and the embedded SDK authorise the caller against :data:`INVOKE` with
``Runtime.authorize``, so invocations get the same permission check and the same audit
of refusals as every operation. It needs ``endpoints.write``: an invocation spends the
endpoint's compute and data capture may store its body, so read-only roles cannot call
it.
"""

from __future__ import annotations

from typing import Any

from modelyard.core.operations import Context, Operation
from modelyard.endpoints.schemas import GetEndpoint


class InvokeInput(GetEndpoint):
    pass


def _invoke(ctx: Context, req: InvokeInput) -> None:  # never called: only authorised against
    raise NotImplementedError


INVOKE: Operation[Any, Any] = Operation(
    name="endpoints.invoke",
    func=_invoke,
    input=InvokeInput,
    output=type(None),
    permission="endpoints.write",
    method="POST",
    path="/endpoints/{name}/invocations",
    mutating=True,
    summary="Invoke an endpoint (the router).",
)
