"""The per-attempt supervisor: ``python -m modelyard.compute.supervisor <attempt dir>``.

The local backend starts one supervisor per attempt in a new session, detached from the
control plane, so the attempt survives a control-plane crash. The supervisor

1. reads ``launch.json`` (command, environment, working directory, max runtime);
2. starts the job's process in its own process group with stdout/stderr appended to
   ``stdout.log``/``stderr.log`` (the controller tails those files): a new program (cold),
   or, for modelyard's own job programs, a fork of the warm server (:mod:`.warm`), which
   also forks this supervisor;
3. writes ``supervisor.json`` (its pid, the child's pid, start time, cold/warm) atomically;
4. stops the process group on SIGTERM or a ``stop`` file (``reason: stopped``) or when the
   max runtime is reached (``reason: max_runtime``): SIGTERM, then SIGKILL after the
   grace period;
5. when the process has exited, writes ``status.json`` atomically: exit code or signal,
   the reason, CPU seconds, peak RSS and wall time of the process tree it reaped.

The controller never talks to the supervisor except through these files and signals, so
it can die and come back at any time. If the supervisor itself dies, the job's process
gets SIGKILL (Linux parent-death signal) and the controller, finding no ``status.json``,
marks the attempt lost.

Only the standard library is imported here: this runs before every job starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

LAUNCH = "launch.json"
SUPERVISOR = "supervisor.json"
STATUS = "status.json"
STOP = "stop"
STDOUT = "stdout.log"
STDERR = "stderr.log"
POLL_S = 0.05

_stop_signalled = False
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


# Supervisors this process started whose backend closed while they still ran (an attempt
# or a replica outlives the controller that launched it): held here until they exit, so a
# running child's Popen is never dropped (CPython warns "subprocess ... is still running")
# and an exited one is reaped.
_outliving: list[subprocess.Popen[bytes]] = []
_outliving_lock = threading.Lock()


def outlive(children: Iterable[subprocess.Popen[bytes]]) -> None:
    """Keep ``children`` until they exit (and reap those started earlier that have)."""
    with _outliving_lock:
        _outliving.extend(children)
        _outliving[:] = [proc for proc in _outliving if proc.poll() is None]


# modelyard's own source folder (the parent of the package), put first on a child's
# PYTHONPATH: a supervisor, driver or replica runs this checkout's modelyard, installed or not.
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with :data:`SOURCE_ROOT` first on
    ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE_ROOT, env.get("PYTHONPATH")]))
    return env


def spawn(
    directory: Path,
    env: dict[str, str] | None = None,
    *,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a supervisor for the attempt folder ``directory`` (its ``launch.json`` written),
    in a session of its own, its own output appended to ``supervisor.log`` there; ``env``
    defaults to :func:`child_environment`. Raises ``OSError`` when it cannot start."""
    with open(directory / "supervisor.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "modelyard.compute.supervisor", str(directory)],
            cwd=directory,
            env=child_environment() if env is None else env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )


def write_json_atomic(path: Path, data: dict[str, Any], *, durable: bool = True) -> None:
    """Write ``data`` as JSON so a reader sees the old file or the whole new one.

    ``durable``: on disk before this returns (the file and the rename). With False the
    caller makes it durable later with :func:`make_durable` (another process can already
    read it: only a machine crash in between could lose it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        _fsync(path.parent)


def make_durable(path: Path) -> None:
    """Put ``path`` (written by ``write_json_atomic(..., durable=False)``) and its name
    on disk."""
    _fsync(path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Flush a file or a folder (its names) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _on_stop(signum: int, frame: FrameType | None) -> None:
    global _stop_signalled
    _stop_signalled = True


def _child_setup(supervisor_pid: int) -> Callable[[], None]:
    """Runs in the child before exec: own process group; die if the supervisor dies."""

    def setup() -> None:
        os.setpgid(0, 0)
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != supervisor_pid:  # it died before prctl took effect
                os._exit(137)

    return setup


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _terminate(child: Child, grace_s: float) -> int:
    """SIGTERM the child's process group, SIGKILL it after ``grace_s``; the exit status."""
    _signal_group(child.pid, signal.SIGTERM)
    try:
        return child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(child.pid, signal.SIGKILL)
        return child.wait()


def _usage(wall_seconds: float) -> dict[str, Any]:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    # ru_maxrss is KiB on Linux and bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return {
        "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 6),
        "peak_rss_bytes": int(ru.ru_maxrss) * scale,
        "wall_seconds": round(wall_seconds, 6),
        "gpu_seconds": None,
    }


class Child(Protocol):
    """The job's process as the supervisor sees it (a ``Popen``, or a forked process)."""

    pid: int

    def wait(self, timeout: float | None = None) -> int: ...


# Starts the job's process: (launch.json, stdout file, stderr file, supervisor pid) -> child.
Spawn = Callable[[dict[str, Any], IO[bytes], IO[bytes], int], Child]


def spawn_process(
    launch: dict[str, Any], out: IO[bytes], err: IO[bytes], supervisor_pid: int
) -> Child:
    """The cold start: a new program from ``launch["command"]``."""
    return subprocess.Popen(
        launch["command"],
        cwd=launch["cwd"],
        env=launch["env"],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        preexec_fn=_child_setup(supervisor_pid),
    )


def supervise(directory: Path, spawn: Spawn = spawn_process, *, start: str = "cold") -> int:
    """Run the attempt in ``directory`` to its end; ``spawn`` starts the job's process
    (``start`` names how, in ``supervisor.json``: cold, or warm from :mod:`.warm`)."""
    launch = json.loads((directory / LAUNCH).read_text(encoding="utf-8"))
    signal.signal(signal.SIGTERM, _on_stop)
    signal.signal(signal.SIGINT, _on_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    max_runtime_s = float(launch["max_runtime_s"])
    grace_s = float(launch.get("stop_grace_s", 5.0))
    started_at = time.time()
    t0 = time.monotonic()
    with open(directory / STDOUT, "ab") as out, open(directory / STDERR, "ab") as err:
        try:
            child = spawn(launch, out, err, os.getpid())
        except OSError as exc:
            write_json_atomic(
                directory / STATUS,
                {
                    "reason": "spawn_error",
                    "message": f"could not start {launch['command'][0]!r}: {exc}",
                    "exit_code": None,
                    "signal": None,
                    "started_at": started_at,
                    "ended_at": time.time(),
                    **_usage(time.monotonic() - t0),
                },
            )
            return 0
    write_json_atomic(
        directory / SUPERVISOR,
        {"pid": os.getpid(), "child_pid": child.pid, "started_at": started_at, "start": start},
    )
    reason = "exited"
    deadline = t0 + max_runtime_s
    stop_file = directory / STOP
    while True:
        try:
            code = child.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        if _stop_signalled or stop_file.exists():
            reason = "stopped"
            code = _terminate(child, grace_s)
            break
        if time.monotonic() >= deadline:
            reason = "max_runtime"
            code = _terminate(child, grace_s)
            break
    wall = time.monotonic() - t0
    # Whatever the job left running in its group (daemons, data loaders) ends with it.
    _signal_group(child.pid, signal.SIGKILL)
    write_json_atomic(
        directory / STATUS,
        {
            "reason": reason,
            "message": None,
            "exit_code": code if code >= 0 else None,
            "signal": -code if code < 0 else None,
            "started_at": started_at,
            "ended_at": time.time(),
            **_usage(wall),
        },
    )
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m modelyard.compute.supervisor <attempt dir>\n")
        return 2
    return supervise(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
