"""Replica processes: a model server (``python -m modelyard.serving``) per replica.

Each replica attempt runs under the jobs supervisor (``modelyard.compute.supervisor``) in a
new session, so it outlives a control-plane crash: after a restart the controller finds
it again by the supervisor's pid and start time (stored in ``endpoint_replicas``) and the
files the supervisor writes (``supervisor.json``: the model server's pid;
``status.json``: how it ended). Nothing here keeps state only in memory. The model
server watches the controller's owner file and stops itself once its control plane has
been gone for a grace period (``--owner-file``), and answers only requests carrying its
secret (:mod:`modelyard.endpoints.replica_auth`), which it gets in its environment.

Folders, under ``$MODELYARD_HOME/endpoints``::

    models/<digest>/                  the model version's artifact, extracted once
    replicas/<replica id>/<attempt>/  launch.json, supervisor.json, status.json, logs
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from modelyard.compute.archive import extract_tar_gz, list_tar_gz
from modelyard.compute.supervisor import (
    LAUNCH,
    STATUS,
    STDERR,
    STOP,
    SUPERVISOR,
    child_environment,
    outlive,
    spawn,
    write_json_atomic,
)
from modelyard.core.artifacts import ArtifactStore
from modelyard.core.paths import safe_component
from modelyard.errors import InvalidInput
from modelyard.serving.settings import SECRET_ENV, SECRET_HEADER

HOST = "127.0.0.1"
# A replica runs until it is stopped; the supervisor wants a limit.
FOREVER_S = 10 * 365 * 86_400.0
STOP_GRACE_S = 30.0
_GZIP_MAGIC = b"\x1f\x8b"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def root(home: Path) -> Path:
    return home / "endpoints"


@dataclass(frozen=True)
class Launched:
    supervisor_pid: int
    supervisor_started: float
    port: int
    attempt: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_environment() -> dict[str, str]:
    """This process's environment, with modelyard's source folder first on PYTHONPATH (a
    replica runs this checkout's ``modelyard``, installed or not)."""
    return child_environment()


def server_command(
    model_dir: Path,
    model: str,
    version: int,
    host: str,
    port: int,
    *,
    owner_file: Path | None = None,
    orphan_grace_s: float = 30.0,
) -> list[str]:
    """The model server's command line for one replica (its secret goes in its
    environment, ``SECRET_ENV``; with ``owner_file`` it stops itself once the process named
    there has been gone for ``orphan_grace_s`` seconds)."""
    owner = (
        ["--owner-file", str(owner_file), "--orphan-grace-s", f"{orphan_grace_s:g}"]
        if owner_file is not None
        else []
    )
    return [
        sys.executable,
        "-m",
        "modelyard.serving",
        "--model-dir",
        str(model_dir),
        "--name",
        model,
        "--version",
        str(version),
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        "warning",
        *owner,
    ]


class ModelCache:
    """Model versions' artifacts, extracted once per digest (atomically, by rename).

    Safe across processes sharing the folder: the first rename wins, the others use it.
    """

    def __init__(self, home: Path, artifacts: ArtifactStore) -> None:
        self.folder = root(home) / "models"
        self.artifacts = artifacts
        self._lock = threading.Lock()

    def path(self, digest: str, filename: str) -> Path:
        """The folder holding version ``digest``'s model (its single file named
        ``filename``, or its extracted folder archive when ``filename`` is '').

        Both names come from stored rows and are checked here, where they become paths:
        InvalidInput for a digest that is not 64 hex characters or a file name that is
        not one safe component, before anything is written.
        """
        if not _DIGEST.fullmatch(digest):
            raise InvalidInput(f"artifact digest {digest!r} is not 64 lower-case hex characters")
        name = safe_component(filename) if filename else "model"
        target = self.folder / digest
        with self._lock:
            if target.is_dir():
                return target
            self.folder.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}.", dir=self.folder))
            try:
                local = work / ".artifact"
                self.artifacts.get_to_path(digest, local)
                with open(local, "rb") as fh:
                    is_gzip = fh.read(2) == _GZIP_MAGIC
                content = work / "model"
                if not filename and is_gzip:
                    list_tar_gz(local)  # refuses unsafe names before anything is written
                    extract_tar_gz(local, content)
                else:
                    content.mkdir()
                    os.replace(local, content / name)
                with contextlib.suppress(FileNotFoundError):
                    local.unlink()
                try:
                    os.replace(content, target)
                except OSError:
                    # Another process sharing the folder (a Ray replica on the same node)
                    # extracted the same digest first: use its copy.
                    if not target.is_dir():
                        raise
            finally:
                shutil.rmtree(work, ignore_errors=True)
            return target


def started_by(pid: int, moment: float) -> bool:
    """Whether ``pid`` is a live process that already ran at ``moment`` (a wall-clock
    time): a pid read from a file written at ``moment`` names that process, not one that
    was given the number after it ended. One second of slack for the clock's resolution."""
    try:
        proc = psutil.Process(pid)
        born = float(proc.create_time())
        return bool(proc.status() != psutil.STATUS_ZOMBIE) and born <= moment + 1.0
    except psutil.Error:
        return False


class Prober:
    """Asks a replica's model server (anywhere: on this host or a Ray node) ``/ping``."""

    def __init__(self) -> None:
        self._http = httpx.Client(timeout=1.0)

    def close(self) -> None:
        self._http.close()

    def probe(self, port: int | None, host: str, secret: str) -> tuple[str, str]:
        """``("ready", "")``, ``("loading", "")`` or ``("failed", why)`` from ``/ping``
        (on ``host``: a Ray replica's node), sent with the replica's ``secret``."""
        if port is None:
            return "loading", ""
        try:
            response = self._http.get(f"http://{host}:{port}/ping", headers={SECRET_HEADER: secret})
        except httpx.HTTPError:
            return "loading", ""
        if response.status_code == 200:
            return "ready", ""
        try:
            body = response.json()
        except ValueError:
            body = {}
        if isinstance(body, dict) and body.get("status") == "failed":
            return "failed", f"the model failed to load: {body.get('error')}"
        return "loading", ""


class Replicas:
    """Starts, finds and stops local replica processes."""

    def __init__(self, home: Path) -> None:
        self.folder = root(home) / "replicas"
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Hand the replicas still running to :func:`outlive` (they outlive the controller)."""
        with self._lock:
            children, self._children = list(self._children.values()), {}
        outlive(children)

    def attempt_dir(self, replica_id: str, attempt: int) -> Path:
        return self.folder / replica_id / str(attempt)

    def launch(
        self,
        replica_id: str,
        attempt: int,
        model_dir: Path,
        model: str,
        version: int,
        *,
        secret: str,
        owner_file: Path | None = None,
        orphan_grace_s: float = 30.0,
    ) -> Launched:
        """Start the attempt under a supervisor. ``secret`` reaches the server through
        ``launch.json``'s environment, in a folder only this user can read."""
        directory = self.attempt_dir(replica_id, attempt)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True, mode=0o700)
        port = free_port()
        command = server_command(
            model_dir,
            model,
            version,
            HOST,
            port,
            owner_file=owner_file,
            orphan_grace_s=orphan_grace_s,
        )
        env = server_environment()
        supervisor_env = dict(env)  # the supervisor itself does not need the secret
        env[SECRET_ENV] = secret
        write_json_atomic(
            directory / LAUNCH,
            {
                "command": command,
                "env": env,
                "cwd": str(directory),
                "max_runtime_s": FOREVER_S,
                "stop_grace_s": STOP_GRACE_S,
            },
        )
        proc = spawn(directory, supervisor_env)
        with self._lock:
            self._children[proc.pid] = proc
        try:
            started = float(psutil.Process(proc.pid).create_time())
        except psutil.Error:
            started = time.time()
        return Launched(proc.pid, started, port, attempt)

    def _reap(self) -> None:
        with self._lock:
            for pid, proc in list(self._children.items()):
                if proc.poll() is not None:
                    del self._children[pid]

    def alive(self, pid: int | None, started: float | None) -> bool:
        """Whether the supervisor ``pid`` born at ``started`` still runs."""
        self._reap()
        if pid is None:
            return False
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            born = float(proc.create_time())
        except psutil.Error:
            return False
        return started is None or abs(born - started) < 1.0

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def server_pid(self, replica_id: str, attempt: int) -> int | None:
        """The attempt's model server, while it runs (a pid reused since is not it)."""
        return self._file_pid(replica_id, attempt, "child_pid")

    def _file_pid(self, replica_id: str, attempt: int, key: str) -> int | None:
        """A pid ``supervisor.json`` names (``pid``: the supervisor; ``child_pid``: the
        model server), while that process runs."""
        path = self.attempt_dir(replica_id, attempt) / SUPERVISOR
        sup = self._read(path) or {}
        pid = sup.get(key)
        if not isinstance(pid, int):
            return None
        try:
            written = path.stat().st_mtime
        except OSError:
            return None
        return pid if started_by(pid, written) else None

    def exit_message(self, replica_id: str, attempt: int) -> str:
        """How an attempt ended, with the end of its stderr."""
        directory = self.attempt_dir(replica_id, attempt)
        status = self._read(directory / STATUS)
        if status is None:
            how = "the replica's supervisor disappeared"
        elif status.get("signal"):
            how = f"the model server was killed by signal {status['signal']}"
        else:
            how = f"the model server exited with status {status.get('exit_code')}"
        tail = ""
        with contextlib.suppress(OSError), open(directory / STDERR, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 600))
            tail = fh.read().decode("utf-8", "replace").strip()
        return f"{how}: {tail[-400:]}" if tail else how

    def log_tail(self, replica_id: str, attempt: int, max_bytes: int) -> str:
        """The last ``max_bytes`` of the attempt's model-server stderr."""
        with (
            contextlib.suppress(OSError),
            open(self.attempt_dir(replica_id, attempt) / STDERR, "rb") as fh,
        ):
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            return fh.read().decode("utf-8", "replace")
        return ""

    def stop(self, replica_id: str, attempt: int, pid: int | None, started: float | None) -> None:
        """Ask the supervisor to stop the server gracefully (in-flight requests finish)."""
        directory = self.attempt_dir(replica_id, attempt)
        with contextlib.suppress(OSError):
            if directory.is_dir():
                (directory / STOP).touch()
        if pid is not None and self.alive(pid, started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)

    def kill(self, replica_id: str, attempt: int, pid: int | None, started: float | None) -> None:
        """SIGKILL the supervisor and the server's process group. Without ``pid`` (a launch
        that was never recorded) the supervisor is the one its ``supervisor.json`` names."""
        child = self.server_pid(replica_id, attempt)
        if pid is None:
            pid, started = self._file_pid(replica_id, attempt, "pid"), None
        if pid is not None and self.alive(pid, started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)

    def remove(self, replica_id: str) -> None:
        shutil.rmtree(self.folder / replica_id, ignore_errors=True)
