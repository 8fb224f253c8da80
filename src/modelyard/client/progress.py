"""Rich progress bars for long SDK and CLI work (shown on a terminal, silent otherwise).

rich's progress module (with its live display) is imported when a bar is drawn, not by the
SDK wrappers that import these helpers: a command that only lists does not load it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from modelyard.core.operations import Progress as ProgressEvent
from modelyard.core.operations import ProgressFn, _no_progress


def wanted(show: bool | None) -> bool:
    return sys.stderr.isatty() if show is None else show


@contextmanager
def task_progress(description: str, show: bool | None = None) -> Iterator[ProgressFn]:
    """A callback for :class:`~modelyard.core.operations.Progress` events, drawn as a bar."""
    if not wanted(show):
        yield _no_progress
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def report(event: ProgressEvent) -> None:
            bar.update(task, description=event.task, completed=event.done, total=event.total)

        yield report


@contextmanager
def transfer_progress(
    description: str, total: int, show: bool | None = None
) -> Iterator[ProgressFn]:
    """Bytes transferred out of ``total``."""
    if not wanted(show):
        yield _no_progress
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)

        def report(event: ProgressEvent) -> None:
            bar.update(task, completed=event.done)

        yield report
