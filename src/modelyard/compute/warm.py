"""Warm starts: a fork server for modelyard's own job programs.

A batch transform or a built-in algorithm is ``python -m modelyard.<module>``. Started
cold, it spends seconds importing NumPy, Arrow, scikit-learn, XGBoost and ONNX Runtime
before its first row: ~4 CPU-seconds on a 2-core machine, more than XGBoost takes to
predict a million rows. So the local backend keeps one warm server per home and owner
process:

    python -m modelyard.compute.warm <jobs root> <token> <owner pid> <owner start time>

It imports those libraries once and never runs a thread pool of its own (no OpenMP region
has run, so forking it is safe). Then it waits on a FIFO, ``<jobs root>/.warm/<token>.fifo``
(mode 0600, so only this user can hand it work), for attempt directories, one per line.
For each one it forks twice. The grandchild, in a session of its own, is that attempt's
supervisor (:func:`modelyard.compute.supervisor.supervise`, unchanged). The supervisor forks
the job's process from the already-imported interpreter instead of starting a new
program. In the fork it sets, as a new interpreter would have them:

- the environment and the working directory;
- stdio, the process group and the parent-death signal;
- the signal dispositions;
- ``sys.argv`` and ``sys.path``;
- the sizes of the OpenMP and BLAS thread pools.

Then it runs the module as ``__main__``.

Everything the controller reads stays the same: ``launch.json``, ``supervisor.json``,
``status.json``, the logs, stop, the max runtime and the usage figures have the same
meaning, and ``supervisor.json`` says ``"start": "warm"``. Only ``<this python> -m
modelyard.…`` commands start warm; the supervisor runs anything else cold, and a launch
that finds no ready server starts cold. The server exits when its owner (the control
plane) is gone, when its FIFO is removed or replaced, or on SIGTERM.
``MODELYARD_WARM_START=0`` turns it off.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import gc
import importlib
import importlib.util
import io
import json
import os
import re
import secrets
import select
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback
import types
from pathlib import Path
from typing import IO, Any

import psutil

from modelyard.compute import supervisor

# Imported once by the server, so a warm job finds them in sys.modules. Never PyTorch: it
# starts thread pools at import and weighs ~180 MB; a TorchScript job imports it itself.
PRELOAD = (
    "numpy",
    "pyarrow",
    "pyarrow.parquet",
    "pyarrow.csv",
    "pyarrow.compute",
    "threadpoolctl",
    "sklearn",
    "sklearn.ensemble",
    "xgboost",
    "lightgbm",
    "onnxruntime",
    "skl2onnx",
    "onnxmltools",
    "modelyard.flavors",
    "modelyard.transform.worker",
)
# Called once after the preload ("module:function", by name: this module imports no
# domain). skops.io without PyTorch, as the flavors load it.
PRELOAD_CALLS = ("modelyard.flavors:import_skops",)
# The server's thread-pool libraries, found once after the preload (a scan of the loaded
# libraries: ~20 ms a job otherwise).
_pools: Any = None
WARM_DIR = ".warm"
OWNER_CHECK_S = 1.0
READY_WAIT_S = 60.0  # a launch waits this long for a server that is still importing
_MODULE = re.compile(r"^modelyard(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_MAX_LINE = 4096  # PIPE_BUF: a write this short reaches the FIFO whole


def enabled() -> bool:
    return os.environ.get("MODELYARD_WARM_START", "1").strip().lower() not in {"0", "false", "no"}


def module_of(command: list[str]) -> str | None:
    """The module a ``<this python> -m modelyard.…`` command runs; None for anything else."""
    if len(command) >= 3 and command[0] == sys.executable and command[1] == "-m":
        return command[2] if _MODULE.fullmatch(command[2]) else None
    return None


def _files(root: Path, token: str) -> tuple[Path, Path, Path]:
    """The server's FIFO, its ready file and its log."""
    folder = root / WARM_DIR
    return folder / f"{token}.fifo", folder / f"{token}.json", folder / f"{token}.log"


# -- the control plane's side ----------------------------------------------------------------


class WarmServer:
    """The handle the local backend keeps: start the server, hand it attempts, stop it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.token = secrets.token_hex(8)
        self.fifo, self.ready, self.log = _files(root, self.token)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        self.fifo.parent.mkdir(parents=True, exist_ok=True)
        me = psutil.Process()
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelyard.compute.warm",
                    str(self.root),
                    self.token,
                    str(me.pid),
                    repr(me.create_time()),
                ],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def submit(self, directory: Path, wait_s: float = READY_WAIT_S) -> bool:
        """Hand the attempt in ``directory`` (its launch.json written) to the server; False
        if no server could take it, and the caller starts it cold."""
        line = (str(directory) + "\n").encode()
        if len(line) > _MAX_LINE:
            return False
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:  # it died: replace it for the next job
                    self._remove_files()
                self._start()
            proc = self._proc
            assert proc is not None
            deadline = time.monotonic() + wait_s
            while not self.ready.exists():
                if proc.poll() is not None or time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader (ENXIO) or no FIFO: the server is gone
                return False
            try:
                return os.write(fd, line) == len(line)
            except OSError:
                return False
            finally:
                os.close(fd)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the server; the attempts it started keep running under their supervisors."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self._remove_files()

    def _remove_files(self) -> None:
        for path in (self.fifo, self.ready):
            with contextlib.suppress(OSError):
                path.unlink()


# -- the server ------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def _preload() -> list[str]:
    loaded = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional library: jobs that need it import it cold
            print(f"warm: not preloaded: {name}: {exc!r}", flush=True)
        else:
            loaded.append(name)
    for target in PRELOAD_CALLS:
        module_name, _, function = target.partition(":")
        getattr(importlib.import_module(module_name), function)()
    return loaded


def _owner_alive(pid: int, started: float) -> bool:
    try:
        owner = psutil.Process(pid)
        alive = owner.status() != psutil.STATUS_ZOMBIE
        return alive and abs(float(owner.create_time()) - started) < 1.0
    except psutil.Error:
        return False


def _still_ours(fifo: Path, inode: int) -> bool:
    try:
        info = fifo.stat()
    except OSError:
        return False
    return stat.S_ISFIFO(info.st_mode) and info.st_ino == inode


def serve(root: Path, token: str, owner_pid: int, owner_started: float) -> int:
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    fifo, ready, log = _files(root, token)
    jobs_root = root.resolve()
    inode = -1
    try:
        started = time.monotonic()
        loaded = _preload()
        global _pools
        from threadpoolctl import ThreadpoolController

        _pools = ThreadpoolController()
        # Everything imported so far stays out of the collector's reach: a collection in
        # a forked job would otherwise write to every object's header, copying the whole
        # inherited heap page by page (tens of milliseconds before a job's first line).
        gc.collect()
        gc.freeze()
        threads = len(os.listdir("/proc/self/task")) if Path("/proc/self/task").is_dir() else None
        print(
            f"warm: preloaded {len(loaded)} modules in {time.monotonic() - started:.2f} s "
            f"({threads} native threads idle)",
            flush=True,
        )
        with contextlib.suppress(FileNotFoundError):
            fifo.unlink()
        os.mkfifo(fifo, 0o600)
        # Read-write, so the FIFO always has a writer and select never sees end-of-file.
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        inode = os.fstat(fd).st_ino
        supervisor.write_json_atomic(
            ready, {"pid": os.getpid(), "started_at": time.time(), "preloaded": loaded}
        )
        pending = b""
        checked = time.monotonic()
        while True:
            readable, _, _ = select.select([fd], [], [], OWNER_CHECK_S)
            if readable:
                with contextlib.suppress(BlockingIOError):
                    pending += os.read(fd, 65536)
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    _dispatch(jobs_root, line, fd)
            if time.monotonic() - checked >= OWNER_CHECK_S:
                checked = time.monotonic()
                if not _owner_alive(owner_pid, owner_started) or not _still_ours(fifo, inode):
                    break
    except _Stop:
        pass
    finally:
        with contextlib.suppress(OSError):
            if _still_ours(fifo, inode):
                fifo.unlink()
                ready.unlink()
                log.unlink()  # kept only when the server died without cleaning up
    return 0


def _dispatch(jobs_root: Path, raw: bytes, fifo_fd: int) -> None:
    """Start the supervisor of the attempt named by ``raw`` (a path under the jobs root)."""
    try:
        directory = Path(raw.decode()).resolve(strict=True)
    except (UnicodeDecodeError, OSError, ValueError) as exc:
        print(f"warm: refused {raw[:200]!r}: {exc}", flush=True)
        return
    if not directory.is_relative_to(jobs_root) or not (directory / supervisor.LAUNCH).is_file():
        print(f"warm: refused {directory}: not an attempt under {jobs_root}", flush=True)
        return
    with contextlib.suppress(Exception):  # the job's own start reports a bad launch
        launch = json.loads((directory / supervisor.LAUNCH).read_text(encoding="utf-8"))
        module = module_of(launch["command"])
        if module is not None:
            _code_of(module)  # read here once; every later job inherits it
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the first child: starts the supervisor and exits, so init adopts it
        code = 1
        try:
            os.close(fifo_fd)
            os.setsid()
            if os.fork() == 0:
                _supervise(directory)  # never returns
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)
    print(f"warm: started the supervisor of {directory}", flush=True)


def _supervise(directory: Path) -> None:
    """In the supervisor process: what ``python -m modelyard.compute.supervisor`` would do."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(directory)
        log = os.open(directory / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        launch = json.loads((directory / supervisor.LAUNCH).read_text(encoding="utf-8"))
        if module_of(launch["command"]) is not None:
            supervisor.supervise(directory, _spawn_warm, start="warm")
        else:
            supervisor.supervise(directory)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        _flush()
        os._exit(code)


# -- the job's process ------------------------------------------------------------------------


class Forked:
    """A forked job process, waited on as ``subprocess.Popen`` is (negative: a signal)."""

    def __init__(self, pid: int, name: str) -> None:
        self.pid = pid
        self.name = name
        self.returncode: int | None = None
        self._fd = os.pidfd_open(pid)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        if timeout is not None and not select.select([self._fd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(self.name, timeout)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        os.close(self._fd)
        return self.returncode


def _spawn_warm(
    launch: dict[str, Any], out: IO[bytes], err: IO[bytes], supervisor_pid: int
) -> Forked:
    module = module_of(launch["command"])
    assert module is not None
    _flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            supervisor._child_setup(supervisor_pid)()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            out.close()
            err.close()
            code = _run_as_main(module, launch)
        except BaseException:
            traceback.print_exc()
        finally:
            _flush()
            os._exit(code)
    return Forked(pid, module)


def _run_as_main(module: str, launch: dict[str, Any]) -> int:
    """Run ``module`` as ``python -m module args…`` would in a new interpreter; its exit
    code."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # SIGHUP stays ignored, as cold
    env: dict[str, str] = launch["env"]
    os.chdir(launch["cwd"])
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [module, *launch["command"][3:]]
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *extra, *(p for p in sys.path[1:] if p not in extra)]
    _size_thread_pools(env)
    if env.get("PYTHONUNBUFFERED"):  # what -u / PYTHONUNBUFFERED give a new interpreter
        sys.stdout = _unbuffered(1, sys.stdout)
        sys.stderr = _unbuffered(2, sys.stderr)
    code: int = 0
    try:
        _exec_as_main(module)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    return code


# Code objects of the modules jobs run, read by the server before it forks: reading and
# unmarshalling a module's .pyc in a forked job took 10-50 ms (every allocation there
# touches inherited pages). Keyed by the source file's path, with its (mtime, size), so a
# changed file is read again.
_codes: dict[str, tuple[tuple[int, int], Any]] = {}


def _source_stamp(origin: str) -> tuple[int, int] | None:
    try:
        info = os.stat(origin)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _code_of(module: str) -> tuple[Any, Any]:
    """``module``'s spec and code object, from :data:`_codes` while its source file is
    unchanged (a fresh read otherwise, kept for the next job forked from this process)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.loader is None or spec.origin is None:
        raise ImportError(f"no module named {module!r}")
    stamp = _source_stamp(spec.origin)
    cached = _codes.get(spec.origin)
    if cached is not None and stamp is not None and cached[0] == stamp:
        return spec, cached[1]
    code = spec.loader.get_code(module)  # type: ignore[attr-defined]
    if stamp is not None:
        _codes[spec.origin] = (stamp, code)
    return spec, code


def _exec_as_main(module: str) -> None:
    """Run ``module``'s code in a new ``__main__`` module, as ``python -m`` does. Also
    ``__mp_main__``, which multiprocessing aliases to ``__main__`` when first imported (here,
    in the server): worker processes pickle their classes by that name."""
    spec, code = _code_of(module)
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=spec.origin,
        __cached__=spec.cached,
        __loader__=spec.loader,
        __package__=spec.parent,
        __spec__=spec,
        __builtins__=builtins,
    )
    sys.modules["__main__"] = sys.modules["__mp_main__"] = main
    sys.argv[0] = spec.origin
    exec(code, main.__dict__)


def _unbuffered(fd: int, like: Any) -> io.TextIOWrapper:
    return io.TextIOWrapper(
        open(fd, "wb", buffering=0, closefd=False),
        encoding=getattr(like, "encoding", None) or "utf-8",
        errors=getattr(like, "errors", None) or "strict",
        write_through=True,
    )


def _size_thread_pools(env: dict[str, str]) -> None:
    """OpenMP and BLAS read their thread counts when loaded, here in the server: size them
    as a new interpreter with the job's environment would."""
    from threadpoolctl import ThreadpoolController

    pools = _pools if _pools is not None else ThreadpoolController()

    def count(*names: str) -> int:
        for name in names:
            value = env.get(name, "").strip()
            if value.isdigit() and int(value) > 0:
                return int(value)
        return os.cpu_count() or 1

    pools.limit(limits=count("OMP_NUM_THREADS"), user_api="openmp")
    pools.limit(
        limits=count("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"),
        user_api="blas",
    )


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        sys.stderr.write(
            "usage: python -m modelyard.compute.warm <jobs root> <token> <owner pid> "
            "<owner start time>\n"
        )
        return 2
    return serve(Path(argv[1]), argv[2], int(argv[3]), float(argv[4]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
