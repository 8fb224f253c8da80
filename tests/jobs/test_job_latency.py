"""The fixed costs around a job, kept small without giving up a guarantee: inputs verified
side by side (a damaged one still refuses the launch), an attempt that ends between two
controller passes noticed by the exit watch, and in-process waiters woken by job changes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import pytest

from modelyard.compute.backends.base import AttemptExit, AttemptPlan, Poll
from modelyard.core.artifacts import LocalArtifactStore
from modelyard.data.schemas import StoredFile
from modelyard.errors import ArtifactCorrupted
from modelyard.jobs import contract
from modelyard.jobs.controller import (
    WATCH,
    JobsController,
    change_generation,
    job_changed,
    wait_for_change,
)
from modelyard.jobs.schemas import ResolvedChannel
from testkit import make_settings


def _channel(store: LocalArtifactStore, name: str, contents: list[bytes]) -> ResolvedChannel:
    files = []
    for i, data in enumerate(contents):
        digest = store.put_bytes(data).digest
        files.append(StoredFile(path=f"part-{i}.bin", digest=digest, size=len(data)))
    return ResolvedChannel(name=name, mode="File", content_type=None, source="files", files=files)


def test_inputs_verified_side_by_side_are_each_linked_with_their_content(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    contents = [bytes([i]) * (300_000 + i) for i in range(5)]
    channels = [_channel(store, "train", contents), _channel(store, "test", contents[:2])]
    layout = contract.Layout(tmp_path / "ml")
    contract.create_tree(layout, tmp_path / "ckpt")

    contract.materialize_inputs(layout, channels, store)

    for name, expected in (("train", contents), ("test", contents[:2])):
        for i, data in enumerate(expected):
            assert (layout.channel(name) / f"part-{i}.bin").read_bytes() == data


def test_a_damaged_input_among_many_refuses_the_launch(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    channel = _channel(store, "train", [bytes([i]) * 200_000 for i in range(4)])
    damaged = Path(store.object_location(channel.files[2].digest))
    damaged.chmod(0o644)
    damaged.write_bytes(b"\x00" * 200_000)  # same size, other bytes
    layout = contract.Layout(tmp_path / "ml")
    contract.create_tree(layout, tmp_path / "ckpt")

    with pytest.raises(ArtifactCorrupted):
        contract.materialize_inputs(layout, [channel], store)
    assert not (layout.channel("train") / "part-2.bin").exists()


class _Backend:
    """A backend whose one attempt runs until ``ended`` is set (or whose poll raises)."""

    url = "fake"

    def __init__(self, *, raises: bool = False) -> None:
        self.ended = False
        self.raises = raises
        self.polled = threading.Event()

    def poll(self, plan: AttemptPlan, ref: dict[str, Any]) -> Poll:
        self.polled.set()
        if self.raises:
            raise OSError("the backend is unreachable")
        if self.ended:
            return Poll("exited", ref, AttemptExit("exited", exit_code=0))
        return Poll("running", ref)


class _Watching(JobsController):
    """The controller's exit watch, run by hand; the jobs it would reconcile are recorded."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(cast(Any, None), cast(Any, None), make_settings(tmp_path), tail_s=600.0)
        self.woken: list[str] = []

    def enqueue(self, *keys: str) -> None:
        self.woken += keys


def _watching(tmp_path: Path, backend: _Backend) -> _Watching:
    controller = _Watching(tmp_path)
    controller._watch_attempt("job-1", cast(Any, backend), cast(AttemptPlan, None), {"pid": 1})
    assert controller.woken == [WATCH]  # the first attempt watched starts the watch
    controller.woken.clear()
    return controller


def test_the_controller_stops_waiting_when_a_watched_attempt_ends(tmp_path: Path) -> None:
    backend = _Backend()
    controller = _watching(tmp_path, backend)
    again = controller.reconcile(WATCH)
    assert backend.polled.wait(30)
    # still running: the watch goes on, the job waits for its next tail (600 s away)
    assert again is not None and again < 1.0
    assert controller.woken == []
    backend.polled.clear()
    assert controller.reconcile(WATCH) is not None
    assert backend.polled.wait(30)  # polled again: the first "running" did not end the watch
    assert controller.woken == []

    backend.ended = True
    assert controller.reconcile(WATCH) is None  # nothing left to watch
    assert controller.woken == ["job-1"], "the exit watch did not cut the wait short"


def test_a_failing_poll_does_not_turn_the_watch_into_a_busy_loop(tmp_path: Path) -> None:
    backend = _Backend(raises=True)
    controller = _watching(tmp_path, backend)
    again = controller.reconcile(WATCH)
    assert backend.polled.wait(30)
    backend.polled.clear()
    assert again is not None and again >= controller.watch_s  # not at once: no busy loop
    assert controller.reconcile(WATCH) is not None
    assert backend.polled.wait(30)  # polled again: the error ended neither wait nor watch
    assert controller.woken == []

    controller._forget("job-1")  # the job's own reconcile saw it end
    assert controller.reconcile(WATCH) is None


def test_a_change_after_the_mark_wakes_a_waiter_even_if_it_came_first() -> None:
    mark = change_generation()
    job_changed()  # committed between reading the job and starting to wait
    assert wait_for_change(mark, 600.0)

    mark = change_generation()
    woke = threading.Event()

    def waiter() -> None:
        if wait_for_change(mark, 600.0):
            woke.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    job_changed()
    assert woke.wait(30)
    thread.join(30)
