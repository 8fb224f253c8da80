"""The node side of an endpoint replica on Ray: :class:`ReplicaWorker`.

With placement ``ray``, each attempt of a replica is a detached, named Ray actor
(``modelyard.<home tag>.ep.<replica id>.<attempt>``, namespace ``modelyard``) running this
class on the node Ray places it on. ``start`` fetches the model version's artifact from the
artifact store on that node (extracted once per digest under the node's work folder,
:func:`~modelyard.compute.backends.ray_worker.work_root`), starts the model server
(``python -m modelyard.serving``) bound to the node's IP on a free port and reports
``(host, port)``; the control plane's router then forwards to that address.

The model server gets SIGKILL when the thread that started it ends (Linux's parent-death
signal), and it is started from one thread that lives as long as the actor: killing the
actor (``ray.kill``, its node dying) ends the replica with it, so a replica never outlives
the actor the controller watches.

The class is plain Python (Ray only for the node's address), so it also runs without a
cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from modelyard.compute.backends.ray_worker import die_with_spawner, node_address, work_root
from modelyard.core.artifacts import open_store
from modelyard.endpoints.processes import ModelCache, server_command, server_environment
from modelyard.serving.settings import SECRET_ENV


@dataclass(frozen=True)
class ReplicaTask:
    """What one replica attempt needs; only plain values, so it pickles across versions."""

    replica_id: str
    attempt: int
    model: str
    version: int
    artifact_digest: str
    artifact_filename: str
    store_url: str
    store_env: dict[str, str] = field(default_factory=dict)  # set before opening the store
    # The attempt's secret (modelyard.endpoints.replica_auth): in the server's environment.
    secret: str = ""


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


class ReplicaWorker:
    """One replica attempt on its node. Methods are safe to call from several threads."""

    def __init__(self, task: ReplicaTask) -> None:
        self.task = task
        os.environ.update(task.store_env)
        self.store = open_store(task.store_url)
        self.root = work_root()
        self.directory = self.root / "endpoints" / "replicas" / task.replica_id / str(task.attempt)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._info: dict[str, Any] = {}
        self._stopped = False
        # The server dies with the thread that started it: one thread, as long as the actor.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="modelyard-replica-spawn")

    def start(self) -> dict[str, Any]:
        """Fetch the model, start the server; ``{"host", "port", "pid", "node_id"}``.

        A second call answers what the first one started (a retried call starts nothing).
        """
        with self._lock:
            if self._info:
                return dict(self._info)
            task = self.task
            cache = ModelCache(self.root, self.store)
            model_dir = cache.path(task.artifact_digest, task.artifact_filename)
            ip, node_id = node_address()
            port = _free_port(ip)
            self.directory.mkdir(parents=True, exist_ok=True)
            command = server_command(model_dir, task.model, task.version, ip, port)
            self._proc = self._spawner.submit(self._spawn, command).result()
            self._info = {"host": ip, "port": port, "pid": self._proc.pid, "node_id": node_id}
            return dict(self._info)

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        env = server_environment()
        if self.task.secret:
            env[SECRET_ENV] = self.task.secret
        with open(self.directory / "stderr", "ab") as err:
            return subprocess.Popen(
                command,
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                preexec_fn=die_with_spawner,
            )

    def poll(self) -> str | None:
        """None while the server runs (or before ``start``); how it ended otherwise."""
        with self._lock:
            proc = self._proc
        if proc is None:
            return None
        code = proc.poll()
        if code is None:
            return None
        how = (
            f"the model server was killed by signal {-code}"
            if code < 0
            else f"the model server exited with status {code}"
        )
        tail = ""
        with contextlib.suppress(OSError), open(self.directory / "stderr", "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 600))
            tail = fh.read().decode("utf-8", "replace").strip()
        return f"{how}: {tail[-400:]}" if tail else how

    def stop(self) -> None:
        """SIGTERM the server (it finishes in-flight requests); the controller kills later."""
        with self._lock:
            proc, self._stopped = self._proc, True
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
