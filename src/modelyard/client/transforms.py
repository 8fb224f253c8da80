"""``client.transforms``: the batch-transform operations (``my.Transformer`` uses them).

Thin by design: requests are built and sent; the rules live in
:mod:`modelyard.transform.service`.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

from pydantic import BaseModel, ValidationError

from modelyard.client.jobs import JobsAPI
from modelyard.client.progress import task_progress, wanted
from modelyard.client.transport import Transport
from modelyard.core.operations import Progress as ProgressEvent
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
        """Wait for the job, then for its output to be registered.

        With ``logs`` the job's lines are printed; on a terminal (or ``show_progress=True``)
        a progress bar follows the rows predicted. Raises
        :class:`~modelyard.jobs.schemas.JobFailed` if the job failed.
        """
        bar = wanted(show_progress)
        if bar:
            self._follow_with_bar(job_id, logs=logs)  # prints the lines itself
        self._jobs.wait(  # returns at once after the bar; raises JobFailed
            job_id, logs=logs and not bar, show_progress=False if bar else show_progress
        )
        result = self.finalize(job_id)
        deadline = time.monotonic() + 60.0
        while not result.finalized and time.monotonic() < deadline:  # a finisher holds it
            time.sleep(0.2)
            result = self.get(job_id)
        return result

    def _follow_with_bar(self, job_id: str, *, logs: bool) -> None:
        """Draw rows done / total from the worker's progress lines until the job ends."""
        done: dict[str, tuple[int, int | None]] = {}  # per worker label
        with task_progress(f"transform {job_id}", True) as report:
            for line in self._jobs.follow(job_id):
                if logs:
                    sys.stdout.write(f"{line.text}\n")
                found = _PROGRESS.match(line.text)
                if found is None:
                    continue
                label, rows, total = found.group(1) or "", found.group(2), found.group(3)
                done[label] = (int(rows), int(total) if total else None)
                totals = [t for _, t in done.values()]
                report(
                    ProgressEvent(
                        f"transform {job_id}: {sum(r for r, _ in done.values()):,} rows",
                        sum(r for r, _ in done.values()),
                        None if None in totals else float(sum(t or 0 for t in totals)),
                    )
                )


# "transform: 1200/5000 rows …" or, with several workers, "transform [1/2]: 1200/2500 rows …"
_PROGRESS = re.compile(r"^transform( \[\d+/\d+\])?: (\d+)(?:/(\d+))? rows")
