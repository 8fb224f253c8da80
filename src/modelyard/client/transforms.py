"""``client.transforms``: the batch-transform operations (``my.Transformer`` uses them).

Thin by design: requests are built and sent; the rules live in
:mod:`modelyard.transform.service`.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ValidationError

from modelyard.client.jobs import JobsAPI
from modelyard.client.transport import Transport
from modelyard.errors import invalid_input_from
from modelyard.transform.schemas import (
    CreateTransform,
    GetTransform,
    ListTransforms,
    Transform,
    TransformList,
)


def build(schema: type[BaseModel], /, **fields: Any) -> Any:
    """``schema(**fields)``; a validation error becomes InvalidInput (a 400 remotely too)."""
    try:
        return schema(**fields)
    except ValidationError as exc:
        raise invalid_input_from(exc) from exc


class TransformsAPI:
    """The ``transforms.*`` operations (``client.transforms``)."""

    def __init__(self, transport: Transport, jobs: JobsAPI) -> None:
        self._t = transport
        self._jobs = jobs

    def create(self, request: CreateTransform | dict[str, Any]) -> Transform:
        """Check the request and submit the transform's job (it starts in the background)."""
        req = request if isinstance(request, CreateTransform) else build(CreateTransform, **request)
        self._jobs._ensure_controller()
        result: Transform = self._t.call("transforms.create", req)
        return result

    def get(self, job_id: str) -> Transform:
        result: Transform = self._t.call("transforms.describe", build(GetTransform, job_id=job_id))
        return result

    def list(self, *, state: str | None = None, limit: int = 100, offset: int = 0) -> TransformList:
        req = build(ListTransforms, state=state, limit=limit, offset=offset)
        result: TransformList = self._t.call("transforms.list_transforms", req)
        return result

    def finalize(self, job_id: str) -> Transform:
        """Register the completed job's output as a dataset version (a no-op if done)."""
        result: Transform = self._t.call("transforms.finalize", build(GetTransform, job_id=job_id))
        return result

    def wait(
        self, job_id: str, *, logs: bool = True, show_progress: bool | None = None
    ) -> Transform:
        """Wait for the job (streaming its progress lines with ``logs``), then for its output
        to be registered. Raises :class:`~modelyard.jobs.schemas.JobFailed` if it failed."""
        self._jobs.wait(job_id, logs=logs, show_progress=show_progress)  # JobFailed
        result = self.finalize(job_id)
        deadline = time.monotonic() + 60.0
        while not result.finalized and time.monotonic() < deadline:  # a finisher holds it
            time.sleep(0.2)
            result = self.get(job_id)
        return result
