"""A replica tells its live controller from a dead one by the kernel's start ticks, which
a stepped wall clock cannot move (psutil's create_time moves with it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from modelyard.core.procs import start_ticks
from modelyard.serving.process import _owner_alive


def _owner(path: Path, **fields: object) -> Path:
    path.write_text(json.dumps({"pid": os.getpid(), **fields}))
    return path


def test_a_live_owner_stays_alive_when_the_wall_clock_moved(tmp_path: Path) -> None:
    me = psutil.Process()
    stepped = me.create_time() - 1.0  # the boot time as read after a one-second clock step
    owner = _owner(tmp_path / "c.json", started=stepped, start_ticks=start_ticks(me.pid))
    assert _owner_alive(owner)


def test_another_process_with_the_same_pid_is_not_the_owner(tmp_path: Path) -> None:
    me = psutil.Process()
    ticks = start_ticks(me.pid)
    assert ticks is not None
    owner = _owner(tmp_path / "c.json", started=me.create_time(), start_ticks=ticks - 100)
    assert not _owner_alive(owner)
    assert not _owner_alive(tmp_path / "missing.json")


def test_an_owner_file_of_an_earlier_release_is_still_read(tmp_path: Path) -> None:
    me = psutil.Process()
    assert _owner_alive(_owner(tmp_path / "c.json", started=me.create_time()))
