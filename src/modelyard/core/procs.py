"""Telling a process apart from a later one that was given the same pid.

A process's start as the kernel counts it, in clock ticks since boot (``/proc/<pid>/stat``,
field 22), never changes. psutil's ``create_time()`` adds the boot time in wall-clock
seconds, which the kernel recomputes on every read: a stepped or slewed clock (NTP, a VM
resumed) moves it by whole seconds, so a process compared by it can look like another.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["start_ticks"]


def start_ticks(pid: int) -> int | None:
    """The start of process ``pid`` in clock ticks since boot; None if it is gone (or
    this is not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ..." where comm may hold spaces and parentheses: split after the
    # last ')'. Field 22 (starttime) is the 20th after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None
