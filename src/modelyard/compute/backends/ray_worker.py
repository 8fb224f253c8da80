"""The node side of the Ray backend: one :class:`HostWorker` per host of an attempt.

:mod:`modelyard.compute.backends.ray` runs this class as a detached, named Ray actor on the
node Ray places it on. The actor is a thin shell around the local backend's machinery, so
a job runs the same way on every backend:

- ``prepare`` has the attempt's workload (a job's: the contract tree of
  :mod:`modelyard.jobs.contract`) lay out its tree under the node's work folder, fetching
  the source and this host's inputs from the artifact store itself and building the
  per-job environment when the source has a ``requirements.txt``, and reports the node's
  address (plus, on algo-1 of a multi-host job, an XGBoost tracker);
- ``start`` writes ``launch.json`` and starts ``python -m modelyard.compute.supervisor`` —
  the very supervisor the local backend uses;
- ``poll``, ``read_logs``, ``stop``, ``collect`` and ``cleanup`` are the local backend's
  methods run on the node (:class:`~modelyard.compute.backends.local.LocalBackend` over the
  node's paths); ``collect`` stores ``model/`` and ``output/`` into the artifact store
  from the node.

Work folder on each node: ``$MODELYARD_RAY_WORKDIR`` (in the environment ``ray start``
ran with), else ``<system temp>/modelyard-ray``; a host's files are under
``<work>/jobs/<job id>/<host>/`` (``attempts/<n>/`` and ``checkpoints/``).

The class is plain Python (it imports Ray only for the node's address), so it also runs
without a cluster.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import psutil

from modelyard.compute.backends.base import (
    AttemptExit,
    AttemptPlan,
    AttemptSpec,
    BackendRef,
    Collected,
    LogLines,
    Poll,
)
from modelyard.compute.backends.local import LocalBackend
from modelyard.compute.environments import EnvironmentBuildFailed
from modelyard.compute.supervisor import LAUNCH, STDOUT, spawn, write_json_atomic
from modelyard.core.artifacts import open_store
from modelyard.errors import ModelyardError

WORKDIR_ENV = "MODELYARD_RAY_WORKDIR"
# Environment variables of the multi-host contract (see docs/jobs.md, "Running on Ray").
HOST_ADDRESSES_ENV = "MODELYARD_HOST_ADDRESSES"
XGB_TRACKER_URI_ENV = "MODELYARD_XGB_TRACKER_URI"
XGB_TRACKER_PORT_ENV = "MODELYARD_XGB_TRACKER_PORT"
LGBM_MACHINES_ENV = "MODELYARD_LGBM_MACHINES"
LGBM_PORT_ENV = "MODELYARD_LGBM_LOCAL_LISTEN_PORT"

Phase = Literal["created", "preparing", "prepared", "running", "failed", "stopped"]
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class HostTask:
    """What one host of an attempt needs: plain values and the attempt's spec (a pydantic
    model of the domain that submitted it, pickled by reference)."""

    job_id: str
    job_name: str
    attempt: int
    spec: AttemptSpec  # the whole attempt's: the host's share is spec.for_host(index, …)
    hosts: list[str]
    index: int  # this host is hosts[index]
    store_url: str
    store_env: dict[str, str] = field(default_factory=dict)  # set before opening the store
    stop_grace_s: float = 10.0
    linger_s: float = 3600.0

    @property
    def host(self) -> str:
        return self.hosts[self.index]


@dataclass(frozen=True)
class HostInfo:
    """What ``prepare`` found out: where the host is and what it offers the others."""

    host: str
    node_ip: str
    node_id: str | None
    hostname: str
    pid: int
    error: str | None = None  # preparing failed; the attempt cannot start
    lgbm_port: int | None = None
    xgb_tracker: dict[str, str] | None = None  # {"uri", "port"} on algo-1 of a multi-host job


@dataclass(frozen=True)
class HostPoll:
    """A host's state; ``phase_age_s`` is how long it has been in ``phase``."""

    host: str
    phase: Phase
    phase_age_s: float
    poll: Poll


def work_root() -> Path:
    """This node's folder for attempts: ``$MODELYARD_RAY_WORKDIR`` or the temp folder."""
    configured = os.environ.get(WORKDIR_ENV)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "modelyard-ray"


def free_port() -> int:
    """A TCP port free on this node right now (for LightGBM's listener)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def node_address() -> tuple[str, str | None]:
    """This node's IP address as Ray knows it, and its Ray node id (None outside Ray)."""
    try:
        import ray
    except ImportError:
        return "127.0.0.1", None
    if not ray.is_initialized():
        return "127.0.0.1", None
    ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    return str(ip), str(ray.get_runtime_context().get_node_id())


def die_with_spawner() -> None:
    """A ``preexec_fn``: the child gets SIGKILL when the thread that started it ends
    (Linux's parent-death signal; nothing elsewhere). Used for the job's supervisor and
    for a replica's server, so neither outlives the actor that watches it."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class HostWorker:
    """One host of one attempt, on its node. Methods are safe to call from several threads.

    Phases: ``created`` → ``preparing`` → ``prepared`` → ``running`` (the supervisor's
    files tell the rest), or ``failed`` (preparing failed) / ``stopped`` (stopped before
    it started). After ``linger_s`` without a call while no job process runs — the control
    plane has gone and not come back — the worker ends itself (``exit``), so a forgotten
    actor does not hold its CPUs forever.
    """

    def __init__(self, task: HostTask, *, exit: Callable[[], None] | None = None) -> None:
        self.task = task
        os.environ.update(task.store_env)
        self.store = open_store(task.store_url)
        host_spec = task.spec.for_host(task.index, len(task.hosts))
        self.root = work_root()
        self.plan = AttemptPlan(
            job_id=task.job_id,
            job_name=task.job_name,
            attempt=task.attempt,
            spec=host_spec,
            job_dir=self.root / "jobs" / task.job_id / task.host,
        )
        self.local = LocalBackend("local", self.store, self.root)
        self.local.stop_grace_s = task.stop_grace_s
        self._lock = threading.RLock()
        self._phase: Phase = "created"
        self._since = time.monotonic()
        self._last_call = time.monotonic()
        self._error: str | None = None
        self._python = sys.executable
        self._ref: BackendRef = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._tracker: Any = None
        # The supervisor gets SIGKILL when the thread that started it ends (Linux's
        # parent-death signal is per thread), so it is started from this one thread,
        # which lives as long as the actor: if the actor dies, so does the attempt.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="modelyard-spawn")
        self._exit = exit or (lambda: os._exit(0))
        threading.Thread(target=self._linger, name="modelyard-linger", daemon=True).start()

    # -- bookkeeping ------------------------------------------------------------------------

    def _set_phase(self, phase: Phase, error: str | None = None) -> None:
        with self._lock:
            self._phase, self._since = phase, time.monotonic()
            if error is not None:
                self._error = error

    def _advance(self, current: Phase, new: Phase) -> bool:
        """Move from ``current`` to ``new``; False if the phase is no longer ``current``."""
        with self._lock:
            if self._phase != current:
                return False
            self._set_phase(new)
            return True

    def _touch(self) -> None:
        self._last_call = time.monotonic()

    def _busy(self) -> bool:
        """Preparing, or the job's supervisor still runs."""
        with self._lock:
            if self._phase == "preparing":
                return True
            return self._proc is not None and self._proc.poll() is None

    def _linger(self) -> None:
        every = min(30.0, max(self.task.linger_s / 4, 0.05))
        while True:
            time.sleep(every)
            idle = time.monotonic() - self._last_call
            if idle > self.task.linger_s and not self._busy():
                self._exit()
                return

    # -- launch -----------------------------------------------------------------------------

    def prepare(self) -> HostInfo:
        """Build this host's contract tree; ``error`` says why it could not be built."""
        self._touch()
        task = self.task
        ip, node_id = node_address()
        info = HostInfo(task.host, ip, node_id, socket.gethostname(), os.getpid())
        if not self._advance("created", "preparing"):
            return replace(info, error=f"{task.host} was already prepared ({self._phase})")
        with ThreadPoolExecutor(1, thread_name_prefix="modelyard-tracker") as side:
            # algo-1 of a multi-host job starts XGBoost's tracker meanwhile (importing
            # XGBoost takes seconds).
            tracker = None
            if len(task.hosts) > 1 and task.index == 0:
                tracker = side.submit(self._start_tracker, ip)
            try:
                self._python = self._build_tree()
            except (ModelyardError, EnvironmentBuildFailed) as exc:
                message = f"preparing {task.host} on {ip} failed: {exc}"
                self._set_phase("failed", message)
                return replace(info, error=message)
            except (OSError, tarfile.TarError, subprocess.SubprocessError) as exc:
                message = f"preparing {task.host} on {ip} failed: {exc!r}"
                self._set_phase("failed", message)
                return replace(info, error=message)
            if len(task.hosts) > 1:
                info = replace(info, lgbm_port=free_port())
            if tracker is not None:
                info = replace(info, xgb_tracker=tracker.result())
        self._advance("preparing", "prepared")  # unless stopped meanwhile
        return info

    def _build_tree(self) -> str:
        plan, task = self.plan, self.task
        directory = plan.attempt_dir
        if directory.exists():  # an earlier actor of this attempt left it behind
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        with open(directory / STDOUT, "ab") as setup_log:
            return plan.spec.workload().prepare(
                plan.work_dir,
                plan.checkpoint_dir,
                self.store,
                hosts=task.hosts,
                host=task.host,
                envs=self.root / "envs",
                setup_log=setup_log,
            )

    def _start_tracker(self, ip: str) -> dict[str, str] | None:
        """XGBoost's collective tracker for the job's hosts, if XGBoost is installed here."""
        try:
            from xgboost.tracker import RabitTracker
        except ImportError:
            return None
        tracker = RabitTracker(n_workers=len(self.task.hosts), host_ip=ip, sortby="task")
        tracker.start()
        self._tracker = tracker  # lives as long as the actor
        args = tracker.worker_args()
        return {"uri": str(args["dmlc_tracker_uri"]), "port": str(args["dmlc_tracker_port"])}

    def start(self, extra_env: dict[str, str]) -> BackendRef:
        """Start the supervisor with the contract's environment plus ``extra_env``."""
        self._touch()
        with self._lock:
            if self._phase != "prepared":
                return {}
            plan, task = self.plan, self.task
            start = plan.spec.workload().launch(
                plan.work_dir,
                self._python,
                job_id=task.job_id,
                job_name=task.job_name,
                attempt=task.attempt,
                hosts=task.hosts,
                host=task.host,
            )
            write_json_atomic(
                plan.attempt_dir / LAUNCH,
                {
                    "command": start.command,
                    "env": {**start.env, **extra_env},
                    "cwd": start.cwd,
                    "max_runtime_s": start.max_runtime_s,
                    "stop_grace_s": task.stop_grace_s,
                },
            )
            try:
                self._proc = self._spawner.submit(self._spawn).result()
            except OSError as exc:
                self._set_phase("failed", f"could not start the supervisor on {task.host}: {exc}")
                return {}
            self._ref = {"pid": self._proc.pid, "create_time": _create_time(self._proc.pid)}
            self._set_phase("running")
            return dict(self._ref)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return spawn(self.plan.attempt_dir, preexec_fn=die_with_spawner)

    # -- watch ------------------------------------------------------------------------------

    def poll(self) -> HostPoll:
        self._touch()
        with self._lock:
            phase, age = self._phase, time.monotonic() - self._since
            if self._proc is not None:
                self._proc.poll()  # reap it once it has ended
            error = self._error
        host = self.task.host
        if phase in ("created", "preparing", "prepared"):
            return HostPoll(host, phase, age, Poll("launching"))
        if phase == "failed":
            exit = AttemptExit("spawn_error", message=error)
            return HostPoll(host, phase, age, Poll("exited", exit=exit))
        if phase == "stopped":
            exit = AttemptExit("stopped", message="stopped before it started")
            return HostPoll(host, phase, age, Poll("exited", exit=exit))
        return HostPoll(host, phase, age, self.local.poll(self.plan, self._ref))

    def read_logs(self, offsets: dict[str, int], final: bool) -> LogLines:
        self._touch()
        return self.local.read_logs(self.plan, self._ref, offsets, final=final)

    def stop(self) -> None:
        """Stop the job (SIGTERM, then SIGKILL); before it started, make sure it never does."""
        self._touch()
        with self._lock:
            if self._phase in ("created", "preparing", "prepared"):
                self._set_phase("stopped")
                return
            if self._phase != "running":
                return
        self.local.stop(self.plan, self._ref)

    # -- results ----------------------------------------------------------------------------

    def collect(self, succeeded: bool) -> Collected:
        """Store model/ and output/ from this node (when ``succeeded``); the failure text."""
        self._touch()
        return self.local.collect(self.plan, self._ref, succeeded=succeeded)

    def cleanup(self) -> None:
        """Remove the input copies (the tree itself stays for inspection, as locally)."""
        self._touch()
        self.local.cleanup(self.plan, self._ref)


def _create_time(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        return float(psutil.Process(pid).create_time())
    return time.time()
