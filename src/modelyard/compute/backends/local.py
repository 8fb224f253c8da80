"""The local backend: each attempt is a supervised process tree on this machine.

``launch`` has the attempt's workload build its tree under
``<home>/jobs/<job>/attempts/<n>/ml``, writes ``launch.json`` and starts
``python -m modelyard.compute.supervisor <attempt dir>`` in a new session, so the attempt
outlives the control plane. Everything else reads files the supervisor writes (see
:mod:`modelyard.compute.supervisor`) and checks the supervisor's pid (with its start
time, so a reused pid is not mistaken for it). Nothing is kept only in memory except the
handles used to reap supervisors this process started.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from modelyard.compute import warm
from modelyard.compute.backends.base import (
    AttemptExit,
    AttemptPlan,
    AttemptSpec,
    BackendRef,
    Capacity,
    Collected,
    ComputeBackend,
    LaunchFailed,
    LogLines,
    Poll,
)
from modelyard.compute.environments import EnvironmentBuildFailed
from modelyard.compute.schemas import ResourceUsage
from modelyard.compute.supervisor import (
    LAUNCH,
    STATUS,
    STDERR,
    STDOUT,
    STOP,
    SUPERVISOR,
    make_durable,
    outlive,
    spawn,
    write_json_atomic,
)
from modelyard.errors import InvalidInput, ModelyardError

HOST = "algo-1"
READ_CHUNK = 1 << 20  # bytes of one stream read per poll
MAX_LINE = 64 * 1024  # a longer run of bytes without a newline is cut into lines


def _gpu_count() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _time(value: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(float(value), dt.UTC) if value is not None else None


def _exit_from_status(status: dict[str, Any]) -> AttemptExit:
    usage = None
    if status.get("wall_seconds") is not None:
        usage = ResourceUsage(
            cpu_seconds=float(status.get("cpu_seconds") or 0.0),
            peak_rss_bytes=int(status.get("peak_rss_bytes") or 0),
            wall_seconds=float(status["wall_seconds"]),
            gpu_seconds=status.get("gpu_seconds"),
        )
    return AttemptExit(
        reason=status.get("reason", "exited"),
        exit_code=status.get("exit_code"),
        signal=status.get("signal"),
        message=status.get("message"),
        usage=usage,
        started_at=_time(status.get("started_at")),
        ended_at=_time(status.get("ended_at")),
    )


class LocalBackend(ComputeBackend):
    scheme = "local"
    # A launch.json with no sign of a supervisor after this long means the launch died.
    launch_grace_s = 15.0
    # Between SIGTERM and SIGKILL when stopping an attempt or at its max runtime.
    stop_grace_s = 10.0

    def __init__(self, url: str, artifacts: Any, home: Path) -> None:
        super().__init__(url, artifacts, home)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._gpus = _gpu_count()
        # modelyard's own job programs start as forks of a warm server (see compute.warm).
        self._warm = warm.WarmServer(home / "jobs") if warm.enabled() else None

    def close(self) -> None:
        with self._lock:
            children, self._children = list(self._children.values()), {}
        outlive(children)  # attempts keep running after the controller stops
        if self._warm is not None:
            self._warm.close()

    @classmethod
    def validate(cls, url: str, spec: AttemptSpec) -> None:
        if url != "local":
            raise InvalidInput(f"the local backend takes no address: use 'local', not {url!r}")
        res = spec.resources
        if res.instance_count != 1:
            raise InvalidInput(
                f"instance_count {res.instance_count}: the local backend runs one instance; "
                "use a Ray cluster (backend='ray://…') for more"
            )
        cpus = os.cpu_count() or 1
        if res.cpus > cpus:
            raise InvalidInput(f"the job asks for {res.cpus} CPUs; this machine has {cpus}")
        memory_mb = psutil.virtual_memory().total // 2**20
        if res.memory_mb is not None and res.memory_mb > memory_mb:
            raise InvalidInput(
                f"the job asks for {res.memory_mb} MiB of memory; this machine has {memory_mb}"
            )
        if res.gpus > _gpu_count():
            raise InvalidInput(f"the job asks for {res.gpus} GPUs; this machine has fewer")

    def capacity(self) -> Capacity:
        return Capacity(
            cpus=os.cpu_count() or 1,
            memory_mb=psutil.virtual_memory().total // 2**20,
            gpus=self._gpus,
        )

    # -- launch -----------------------------------------------------------------------------

    def _prepare(self, plan: AttemptPlan, setup_log: Any) -> str:
        """Have the workload build its tree; the Python interpreter the job runs with."""
        return plan.spec.workload().prepare(
            plan.work_dir,
            plan.checkpoint_dir,
            self.artifacts,
            hosts=[HOST],
            host=HOST,
            envs=self.home / "envs",
            setup_log=setup_log,
        )

    def launch(self, plan: AttemptPlan) -> BackendRef:
        directory = plan.attempt_dir
        if directory.exists():  # a launch that never got to launch.json left this behind
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        with open(directory / STDOUT, "ab") as setup_log:
            try:
                python = self._prepare(plan, setup_log)
            except (ModelyardError, EnvironmentBuildFailed) as exc:
                raise LaunchFailed(f"preparing the attempt failed: {exc}") from exc
            except (OSError, tarfile.TarError, subprocess.SubprocessError) as exc:
                raise LaunchFailed(f"preparing the attempt failed: {exc!r}") from exc
        start = plan.spec.workload().launch(
            plan.work_dir,
            python,
            job_id=plan.job_id,
            job_name=plan.job_name,
            attempt=plan.attempt,
            hosts=[HOST],
            host=HOST,
        )
        command = start.command
        # The job starts while launch.json goes to disk: it is durable before this returns
        # (and so before the launch is recorded), which is all a restart relies on.
        write_json_atomic(
            directory / LAUNCH,
            {
                "command": command,
                "env": start.env,
                "cwd": start.cwd,
                "max_runtime_s": start.max_runtime_s,
                "stop_grace_s": self.stop_grace_s,
            },
            durable=False,
        )
        if (
            self._warm is not None
            and warm.module_of(command) is not None
            and self._warm.submit(directory)
        ):
            make_durable(directory / LAUNCH)
            return self._warm_ref(directory)
        try:
            proc = spawn(directory)
        except OSError as exc:
            raise LaunchFailed(f"could not start the supervisor: {exc}") from exc
        with self._lock:
            self._children[str(directory)] = proc
        make_durable(directory / LAUNCH)
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = time.time()
        return {
            "pid": proc.pid,
            "create_time": create_time,
            "host": socket.gethostname(),
            "start": "cold",
        }

    @staticmethod
    def _warm_ref(directory: Path, wait_s: float = 5.0) -> BackendRef:
        """The ref of an attempt handed to the warm server: its supervisor's pid from
        supervisor.json (written within milliseconds), or none yet, and poll finds it."""
        ref: BackendRef = {"pid": None, "create_time": None, "host": socket.gethostname()}
        deadline = time.monotonic() + wait_s
        while (sup := _read_json(directory / SUPERVISOR)) is None:
            if time.monotonic() >= deadline:
                return {**ref, "start": "warm"}
            time.sleep(0.005)
        with contextlib.suppress(psutil.Error):
            ref["create_time"] = psutil.Process(int(sup["pid"])).create_time()
        return {**ref, "pid": sup["pid"], "start": "warm"}

    # -- watch ------------------------------------------------------------------------------

    def _reap(self, directory: Path) -> None:
        with self._lock:
            proc = self._children.get(str(directory))
            if proc is not None and proc.poll() is not None:
                del self._children[str(directory)]

    @staticmethod
    def _alive(pid: int, create_time: float | None, started_at: float | None) -> bool:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            born = float(proc.create_time())
        except psutil.Error:
            return False
        if create_time is not None:
            return abs(born - create_time) < 1.0
        return started_at is None or abs(born - started_at) < 5.0

    def poll(self, plan: AttemptPlan, ref: BackendRef) -> Poll:
        directory = plan.attempt_dir
        self._reap(directory)
        sup = _read_json(directory / SUPERVISOR) or {}
        if ref.get("pid") is None and sup.get("pid") is not None:
            # A warm start (or a re-attach): the supervisor's pid is in its file.
            ref = {**ref, "pid": sup["pid"], "host": ref.get("host") or socket.gethostname()}
        status = _read_json(directory / STATUS)
        if status is not None:
            return Poll("exited", ref, _exit_from_status(status))
        launch_file = directory / LAUNCH
        if not launch_file.exists():
            return Poll("not_launched")
        pid = ref.get("pid")
        if pid is not None:
            if self._alive(int(pid), ref.get("create_time"), sup.get("started_at")):
                return Poll("running", ref)
        else:
            with contextlib.suppress(OSError):
                if time.time() - launch_file.stat().st_mtime < self.launch_grace_s:
                    return Poll("launching")
        # Gone without a word; it may have written status.json just now.
        status = _read_json(directory / STATUS)
        if status is not None:
            return Poll("exited", ref, _exit_from_status(status))
        self._kill_orphans(sup)
        who = f"pid {pid}" if pid is not None else "never started"
        return Poll(
            "exited",
            ref,
            AttemptExit(
                reason="lost",
                message=f"supervisor lost ({who}): it ended without recording how the job "
                "ended (killed, or the machine restarted)",
            ),
        )

    @staticmethod
    def _kill_orphans(sup: dict[str, Any]) -> None:
        """SIGKILL the job's process group if its leader is still the job's process."""
        child, started = sup.get("child_pid"), sup.get("started_at")
        if child is None or started is None:
            return
        try:
            born = float(psutil.Process(int(child)).create_time())
        except psutil.Error:
            return
        if started - 1.0 <= born <= started + 60.0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(child), signal.SIGKILL)

    def read_logs(
        self, plan: AttemptPlan, ref: BackendRef, offsets: dict[str, int], *, final: bool
    ) -> LogLines:
        lines: list[tuple[str, str]] = []
        new_offsets = dict(offsets)
        for stream, name in (("stdout", STDOUT), ("stderr", STDERR)):
            start = offsets.get(stream, 0)
            try:
                with open(plan.attempt_dir / name, "rb") as fh:
                    fh.seek(start)
                    data = fh.read(READ_CHUNK)
            except FileNotFoundError:
                continue
            if not data:
                continue
            cut = data.rfind(b"\n") + 1
            if cut == 0 and (final or len(data) >= MAX_LINE):
                cut = len(data)
            if final and len(data) < READ_CHUNK:
                cut = len(data)
            for raw in data[:cut].splitlines():
                for i in range(0, max(len(raw), 1), MAX_LINE):
                    text = raw[i : i + MAX_LINE].decode("utf-8", errors="replace")
                    lines.append((stream, text.replace("\x00", "\ufffd")))
            new_offsets[stream] = start + cut
        return LogLines(lines, new_offsets)

    def stop(self, plan: AttemptPlan, ref: BackendRef) -> None:
        directory = plan.attempt_dir
        with contextlib.suppress(OSError):
            (directory / STOP).touch()
        sup = _read_json(directory / SUPERVISOR) or {}
        pid = ref.get("pid") or sup.get("pid")
        if pid is not None and self._alive(int(pid), ref.get("create_time"), sup.get("started_at")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGTERM)

    # -- results ----------------------------------------------------------------------------

    def collect(self, plan: AttemptPlan, ref: BackendRef, *, succeeded: bool) -> Collected:
        return plan.spec.workload().collect(
            plan.work_dir, self.artifacts, plan.attempt_dir, succeeded=succeeded
        )

    def cleanup(self, plan: AttemptPlan, ref: BackendRef) -> None:
        plan.spec.workload().cleanup(plan.work_dir)
