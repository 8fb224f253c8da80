"""The Ray backend: each host of an attempt is a detached, named Ray actor on a cluster.

Backend URLs:

- ``ray`` — ``ray.init(address="auto")``: the cluster named by ``RAY_ADDRESS`` (its GCS
  ``host:port``), else the one running on this machine. The control plane must run on a
  node of the cluster (as ``modelyard up`` on the head node does).
- ``ray://<host>:<port>`` — a Ray Client address (default port 10001), for a control
  plane outside the cluster. Needs ``ray[client]`` on both sides.

The control plane does not import Ray. A Ray driver ends its whole process when the
cluster's GCS is unreachable for 60 s, so each address gets a driver process of its own
(:mod:`modelyard.compute.backends.ray_driver`), started on first use and shared by the
control planes of this process; calls go to it over a local socket. If it dies (the
cluster went away), calls fail with :class:`~modelyard.errors.ConfigurationError` — the
controller retries them on its next pass — and a new one is started, at most every
:data:`RESTART_BACKOFF_S`.

Each host ``algo-<i>`` of attempt ``n`` of job ``J`` is the actor
``modelyard.<home tag>.J.n.algo-<i>`` in namespace ``modelyard``, created with
``lifetime="detached"`` so it outlives the control plane: after a restart the controller
finds it again by name from the plan alone. The actor
(:class:`~modelyard.compute.backends.ray_worker.HostWorker`) runs the local backend's
supervisor on its node and answers ``poll``/``read_logs``/``stop``/``collect``. It reads
the source and inputs from the artifact store and writes model/output back to it from the
node, so a multi-node cluster needs an artifact store every node reaches (``s3://``); a
local-folder store works where all nodes share the file system (one machine).

``instance_count > 1``: the hosts' resources are reserved together in a detached
placement group with the ``SPREAD`` strategy (one bundle per host, spread over nodes
where possible; on a one-node cluster all bundles land on that node). Every host gets
``SM_HOSTS``/``SM_CURRENT_HOST``, its shard of each ``ShardedByS3Key`` channel, and the
data-parallel variables of :func:`~modelyard.compute.backends.ray_driver.cluster_environments`.
The attempt succeeds when every host succeeds; a failing host stops the others;
``model/`` and ``output/`` come from algo-1. Log lines of algo-1 are stored as they are,
other hosts' prefixed ``[algo-<i>] ``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from modelyard.compute.backends.base import (
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
from modelyard.compute.supervisor import child_environment
from modelyard.core.artifacts import ArtifactStore
from modelyard.errors import ConfigurationError, InvalidInput

DEFAULT_CLIENT_PORT = 10001
# A driver process that failed to start is not tried again for this long.
RESTART_BACKOFF_S = 15.0
# How long a new driver process may take to connect to Ray.
DRIVER_START_TIMEOUT_S = 120.0
# How long a call waits for a driver being started: the first one of this process for a
# cluster (imports and ray.init take seconds), and a replacement for one that died.
FIRST_START_WAIT_S = 60.0
RESTART_WAIT_S = 5.0
# How often :meth:`RayBackend.wait_for_driver` asks again while a driver starts or backs off.
DRIVER_RETRY_S = 0.5
# Not secrets: where the artifact store is. Credentials come from each node's own
# environment (or instance role); they are never put into actor arguments.
FORWARDED_ENV = ("MODELYARD_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_REGION")
# The driver process's connection errors: it died, or was never there.
_GONE = (EOFError, OSError)


def ray_address(url: str) -> str:
    """What ``ray.init`` gets for a backend URL; :class:`InvalidInput` for a bad one."""
    if url == "ray":
        return "auto"
    parts = urlsplit(url)
    if parts.scheme != "ray" or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidInput(
            f"Ray backend URL {url!r} is not valid; use 'ray' (the cluster this machine is "
            "part of, or RAY_ADDRESS) or 'ray://<head host>:<client port>' (Ray Client)"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput(f"Ray backend URL {url!r} must not have a query, fragment or user")
    try:
        port = parts.port or DEFAULT_CLIENT_PORT
    except ValueError:
        raise InvalidInput(f"Ray backend URL {url!r} has an invalid port") from None
    return f"ray://{parts.hostname}:{port}"


@dataclass(frozen=True)
class DriverOptions:
    """A control plane's settings for its driver: the backend's timeouts, fixed at first use."""

    address: str
    stop_grace_s: float  # between SIGTERM and SIGKILL (stop, max runtime)
    placement_timeout_s: float  # a multi-host job's placement group
    prepare_timeout_s: float  # the hosts' preparation, including waiting to be scheduled
    call_timeout_s: float  # poll/read_logs/stop/cleanup: slower counts as busy
    collect_timeout_s: float  # uploading model/ and output/ from the node
    launch_grace_s: float  # a launch interrupted by a control-plane crash is given up
    linger_s: float  # an actor nobody calls for this long ends itself after its job
    store_env: dict[str, str]  # FORWARDED_ENV as the control plane has them


# -- driver processes -------------------------------------------------------------------------


class _DriverManager(BaseManager):
    pass


_DriverManager.register("RayDriver")


@dataclass
class _Driver:
    """A driver process being started (in a thread) or running, and its manager."""

    address: str
    folder: Path
    manager: _DriverManager
    authkey: bytes
    wait_until: float  # callers wait for the start to settle until then
    process: subprocess.Popen[bytes] | None = None
    error: str | None = None  # why the start failed
    settled_at: float = 0.0
    settled: threading.Event = field(default_factory=threading.Event)

    def usable(self) -> bool:
        return self.settled.is_set() and self.error is None and self.alive()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the process and connect to it; sets ``error`` or makes it usable."""
        try:
            self._start()
        except ConfigurationError as exc:
            self.error = str(exc)
        except (OSError, EOFError) as exc:
            self.error = f"the Ray driver for {self.address!r} did not start: {exc!r}"
        if self.error is not None:
            self.close()
        self.settled_at = time.monotonic()
        self.settled.set()

    def _start(self) -> None:
        socket_path = str(self.folder / "driver.sock")
        env = child_environment()
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # The driver gives up (ends) 10 s after the cluster became unreachable, not 60 s:
        # calls stuck meanwhile wait that long, and a new driver takes over.
        env.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", "10")
        command = [sys.executable, "-m", "modelyard.compute.backends.ray_driver", socket_path]
        self.process = process = subprocess.Popen(
            [*command, self.address, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a Ctrl-C in the control plane's terminal is not for it
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(self.authkey.hex().encode() + b"\n")
        process.stdin.close()
        ready, _, _ = select.select([process.stdout], [], [], DRIVER_START_TIMEOUT_S)
        line = process.stdout.readline().decode(errors="replace").strip() if ready else ""
        process.stdout.close()
        if line != "ready":
            code = process.poll()
            why = line.removeprefix("error: ") or (
                f"it exited with code {code}"
                if code is not None
                else f"no answer within {DRIVER_START_TIMEOUT_S:.0f} s"
            )
            raise ConfigurationError(f"the Ray driver for {self.address!r} did not start: {why}")
        self.manager.connect()

    def close(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


_drivers: dict[str, _Driver] = {}
_failed_at: dict[str, float] = {}
_ever_ready: set[str] = set()
_drivers_lock = threading.Lock()


def _driver_key(address: str) -> str:
    # "auto" means RAY_ADDRESS if set: a different value is a different cluster.
    return f"auto={os.environ.get('RAY_ADDRESS', '')}" if address == "auto" else address


def _new_driver(key: str, address: str) -> _Driver:
    """Start a driver in the background (called with the lock held)."""
    now = time.monotonic()
    wait = _failed_at.get(key, -RESTART_BACKOFF_S) + RESTART_BACKOFF_S - now
    if wait > 0:
        raise ConfigurationError(
            f"the Ray cluster at {address!r} was unreachable; trying again in {wait:.0f} s"
        )
    folder = Path(tempfile.mkdtemp(prefix="modelyard-ray-"))
    authkey = secrets.token_bytes(32)
    first = key not in _ever_ready
    driver = _Driver(
        address,
        folder,
        _DriverManager(address=str(folder / "driver.sock"), authkey=authkey),
        authkey,
        wait_until=now + (FIRST_START_WAIT_S if first else RESTART_WAIT_S),
    )
    threading.Thread(target=driver.start, name="modelyard-ray-driver", daemon=True).start()
    return driver


def _driver_for(address: str) -> _Driver:
    """The usable driver process for ``address``, started if needed.

    Raises :class:`ConfigurationError` at once while a restart is pending or backing off,
    and after a bounded wait while a start is under way (up to
    :data:`FIRST_START_WAIT_S` for a cluster this process never reached, else
    :data:`RESTART_WAIT_S`), so a Ray outage does not hold up the controller's loop.
    """
    key = _driver_key(address)
    with _drivers_lock:
        driver = _drivers.get(key)
        if driver is not None and driver.settled.is_set() and not driver.usable():
            if driver.error is not None:
                _failed_at[key] = driver.settled_at
            driver.close()
            del _drivers[key]
            driver = None
        if driver is None:
            driver = _drivers[key] = _new_driver(key, address)
    if not driver.settled.wait(max(driver.wait_until - time.monotonic(), 0.0)):
        raise ConfigurationError(f"still connecting to the Ray cluster at {address!r}")
    if driver.error is not None:
        raise ConfigurationError(driver.error)
    _ever_ready.add(key)
    return driver


def driver_pids() -> dict[str, int]:
    """This process's running Ray driver processes: ``{cluster: pid}``."""
    with _drivers_lock:
        return {k: d.process.pid for k, d in _drivers.items() if d.process and d.alive()}


def shutdown_drivers() -> None:
    """End this process's Ray driver processes (attempts on the clusters keep running)."""
    with _drivers_lock:
        drivers = list(_drivers.values())
        _drivers.clear()
        _failed_at.clear()
    for driver in drivers:
        driver.settled.wait(DRIVER_START_TIMEOUT_S)
        driver.close()


# -- the backend ------------------------------------------------------------------------------


class RayBackend(ComputeBackend):
    scheme: ClassVar[str] = "ray"
    # Between SIGTERM and SIGKILL when stopping an attempt or at its max runtime.
    stop_grace_s = 10.0
    # How long a launch waits for a multi-host job's placement group.
    placement_timeout_s = 300.0
    # How long a launch waits for the hosts to be scheduled and prepared (inputs, venv).
    prepare_timeout_s = 1800.0
    # poll/read_logs/stop: an actor slower than this counts as busy, not as gone.
    call_timeout_s = 10.0
    # Uploading model/ and output/ from the node.
    collect_timeout_s = 3600.0
    # A launch interrupted by a control-plane crash is given up after this long.
    launch_grace_s = 120.0
    # An actor nobody calls for this long ends itself once its job has ended.
    linger_s = 3600.0
    # How long a launch waits for the Ray driver process being started, replaced (the one
    # before died: cluster restarted, process killed) or backing off after a failed start
    # (a Ray Client connection can fail once and work on the next try). The controller
    # launches on one of its worker threads, so this holds that thread, not its loop (and
    # admission asks the cluster's capacity first, so few launches meet an outage); only a
    # cluster still unreachable after it fails the attempt.
    connect_timeout_s = 90.0

    def __init__(self, url: str, artifacts: ArtifactStore, home: Path) -> None:
        super().__init__(url, artifacts, home)
        self.address = ray_address(url)
        self.tag = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
        self._proxy: Any = None
        self._proxy_of: _Driver | None = None
        self._lock = threading.Lock()

    @classmethod
    def validate(cls, url: str, spec: AttemptSpec) -> None:
        ray_address(url)
        if importlib.util.find_spec("ray") is None:
            raise InvalidInput("the Ray backend needs Ray: pip install 'modelyard[ray]'")

    def _options(self) -> DriverOptions:
        return DriverOptions(
            address=self.address,
            stop_grace_s=self.stop_grace_s,
            placement_timeout_s=self.placement_timeout_s,
            prepare_timeout_s=self.prepare_timeout_s,
            call_timeout_s=self.call_timeout_s,
            collect_timeout_s=self.collect_timeout_s,
            launch_grace_s=self.launch_grace_s,
            linger_s=self.linger_s,
            store_env={k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)},
        )

    def _driver(self) -> Any:
        """This control plane's :class:`~modelyard.compute.backends.ray_driver.RayDriver`."""
        driver = _driver_for(self.address)
        with self._lock:
            if self._proxy is None or self._proxy_of is not driver:
                manager: Any = driver.manager
                self._proxy = manager.RayDriver(self.artifacts.url, self.tag, self._options())
                self._proxy_of = driver
            return self._proxy

    def wait_for_driver(self, timeout_s: float) -> None:
        """Wait until the driver process for this cluster is connected: through a start
        under way, the backoff after a failed one and the next start (a driver that died —
        the cluster was away, the process was killed — is replaced only after a call).

        For a caller that may block, such as a launch on a worker thread, where a driver
        being replaced must not count as a failure. The last :class:`ConfigurationError`
        after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._driver()
                return
            except _GONE as exc:  # the driver died while the proxy was made
                with self._lock:
                    self._proxy = None
                error = ConfigurationError(
                    f"lost the Ray driver process for {self.address!r} ({exc!r})"
                )
            except ConfigurationError as exc:
                error = exc
            if time.monotonic() + DRIVER_RETRY_S > deadline:
                raise error
            time.sleep(DRIVER_RETRY_S)

    def call(self, method: str, *args: Any) -> Any:
        """``method`` of this control plane's :class:`RayDriver` in the driver process;
        :class:`ConfigurationError` when the driver (the cluster) is gone."""
        try:
            return getattr(self._driver(), method)(*args)
        except _GONE as exc:
            with self._lock:
                self._proxy = None
            raise ConfigurationError(
                f"lost the Ray driver process for {self.address!r} ({exc!r}); the Ray "
                "cluster may be down. It is restarted on the next call."
            ) from exc

    def capacity(self) -> Capacity:
        result: Capacity = self.call("capacity")
        return result

    def launch(self, plan: AttemptPlan) -> BackendRef:
        """Start the attempt's actors (one call for all its hosts, placement group included),
        after waiting up to :attr:`connect_timeout_s` for the driver process;
        :class:`LaunchFailed` with the last connection error if it is still not there."""
        try:
            self.wait_for_driver(self.connect_timeout_s)
            ref: BackendRef = self.call("launch", plan)
        except ConfigurationError as exc:
            raise LaunchFailed(str(exc)) from exc
        return ref

    def poll(self, plan: AttemptPlan, ref: BackendRef) -> Poll:
        result: Poll = self.call("poll", plan, ref)
        return result

    def read_logs(
        self, plan: AttemptPlan, ref: BackendRef, offsets: dict[str, int], *, final: bool
    ) -> LogLines:
        result: LogLines = self.call("read_logs", plan, ref, offsets, final)
        return result

    def stop(self, plan: AttemptPlan, ref: BackendRef) -> None:
        self.call("stop", plan, ref)

    def collect(self, plan: AttemptPlan, ref: BackendRef, *, succeeded: bool) -> Collected:
        result: Collected = self.call("collect", plan, ref, succeeded)
        return result

    def cleanup(self, plan: AttemptPlan, ref: BackendRef) -> None:
        with contextlib.suppress(ConfigurationError):  # the actors end by themselves later
            self.call("cleanup", plan, ref)
