"""The Ray driver process of the Ray backend: ``python -m modelyard.compute.backends.ray_driver``.

A Ray driver terminates its whole process when the cluster's GCS stays unreachable for
60 s, and ``ray.init`` is process-wide. So the control plane never connects to Ray
itself: :mod:`modelyard.compute.backends.ray` starts this process (one per cluster address)
and calls :class:`RayDriver` in it through :mod:`multiprocessing.managers` over a Unix
socket (private folder, random auth key read from stdin). If the cluster goes away, this
process ends; the control plane keeps running and starts a new one when Ray is back.

Protocol with the parent: argv is ``<socket path> <address> <parent pid>``, the auth key
(hex) is the first line of stdin. The process connects to Ray, listens, prints ``ready``
(or ``error: <why>`` and exits 1), then serves until its parent is gone or it gets
SIGTERM.

What it does for a control plane: each host ``algo-<i>`` of attempt ``n`` of job ``J`` is
the detached actor ``modelyard.<home tag>.J.n.algo-<i>`` (namespace ``modelyard``) running
:class:`~modelyard.compute.backends.ray_worker.HostWorker`; a multi-host attempt's resources
are a detached ``SPREAD`` placement group of the same name minus the host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.managers import BaseManager
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError
from ray.util.placement_group import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from modelyard.compute.backends.base import (
    FAILURE_LIMIT,
    AttemptExit,
    AttemptPlan,
    AttemptSpec,
    BackendRef,
    Capacity,
    Collected,
    LaunchFailed,
    LogLines,
    Poll,
)
from modelyard.compute.backends.ray import DriverOptions
from modelyard.compute.backends.ray_worker import (
    HOST_ADDRESSES_ENV,
    LGBM_MACHINES_ENV,
    LGBM_PORT_ENV,
    XGB_TRACKER_PORT_ENV,
    XGB_TRACKER_URI_ENV,
    HostInfo,
    HostPoll,
    HostTask,
    HostWorker,
)
from modelyard.compute.schemas import ResourceUsage
from modelyard.errors import ConfigurationError

NAMESPACE = "modelyard"

_RemoteWorker = ray.remote(HostWorker)
_remote_classes: dict[type, Any] = {}
_remote_lock = threading.Lock()


def remote_class(worker: type) -> Any:
    """``ray.remote(worker)``, made once per class (a replica's worker class is named by
    the domain that runs replicas, e.g. the endpoints' ``ReplicaWorker``)."""
    with _remote_lock:
        remote = _remote_classes.get(worker)
        if remote is None:
            remote = _remote_classes[worker] = ray.remote(worker)
        return remote


def connect(address: str) -> None:
    """Connect this process to Ray (``ray.init``) unless it already is."""
    if ray.is_initialized():
        return
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot connect to the Ray cluster at {address!r}: {exc}"
        ) from exc


def _cluster_resources() -> dict[str, float]:
    """The cluster's total resources (``CPU``, ``GPU``, ``memory`` in bytes…)."""
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return resources


def _cause(exc: BaseException) -> str:
    """A short description of a Ray error (a task error's own exception, not the trace)."""
    cause = getattr(exc, "cause", None)
    return repr(cause) if isinstance(cause, BaseException) else str(exc).splitlines()[0]


def _combine_usage(exits: Sequence[AttemptExit]) -> ResourceUsage | None:
    usages = [e.usage for e in exits if e.usage is not None]
    if not usages:
        return None
    return ResourceUsage(
        cpu_seconds=sum(u.cpu_seconds for u in usages),
        peak_rss_bytes=max(u.peak_rss_bytes for u in usages),
        wall_seconds=max(u.wall_seconds for u in usages),
        gpu_seconds=None,
    )


def combine_exits(hosts: Sequence[str], exits: Sequence[AttemptExit]) -> AttemptExit:
    """How a multi-host attempt ended: success if every host succeeded, else the cause.

    The cause is the first host (in host order) that failed other than by being stopped —
    the others were stopped because of it — else the first host that did not succeed.
    Usage: CPU seconds summed, peak RSS and wall time the largest.
    """
    started = [e.started_at for e in exits if e.started_at is not None]
    ended = [e.ended_at for e in exits if e.ended_at is not None]
    common: dict[str, Any] = {
        "usage": _combine_usage(exits),
        "started_at": min(started) if started else None,
        "ended_at": max(ended) if ended else None,
    }
    failed = [(h, e) for h, e in zip(hosts, exits, strict=True) if not e.succeeded]
    if not failed:
        return AttemptExit("exited", exit_code=0, **common)
    causes = [(h, e) for h, e in failed if e.reason != "stopped"]
    host, first = (causes or failed)[0]
    message = first.message
    if len(hosts) > 1 and message:
        message = f"{host}: {message}"
    return AttemptExit(
        first.reason, exit_code=first.exit_code, signal=first.signal, message=message, **common
    )


class RayDriver:
    """The Ray backend's calls for one control plane (one ``home``), in the driver process.

    Methods mirror :class:`~modelyard.compute.backends.base.ComputeBackend`'s and raise only
    :class:`LaunchFailed`, :class:`ConfigurationError` or :class:`RuntimeError` (they
    travel back to the control plane pickled).
    """

    def __init__(self, store_url: str, tag: str, options: DriverOptions) -> None:
        self.store_url = store_url
        self.options = options
        self._tag = tag
        self._handles: dict[str, Any] = {}
        self._pending_since: dict[str, float] = {}
        self._stopping: set[str] = set()
        self._lock = threading.Lock()

    def pid(self) -> int:
        """This driver process's id."""
        return os.getpid()

    def capacity(self) -> Capacity:
        resources = _cluster_resources()
        return Capacity(
            cpus=int(resources.get("CPU", 0)),
            memory_mb=int(resources.get("memory", 0)) // 2**20,
            gpus=int(resources.get("GPU", 0)),
        )

    # -- names ------------------------------------------------------------------------------

    @staticmethod
    def hosts(spec: AttemptSpec) -> list[str]:
        return [f"algo-{i + 1}" for i in range(spec.resources.instance_count)]

    def group_name(self, plan: AttemptPlan) -> str:
        """The placement group's name (also the prefix of the actors' names)."""
        return f"modelyard.{self._tag}.{plan.job_id}.{plan.attempt}"

    def actor_names(self, plan: AttemptPlan) -> list[str]:
        return [f"{self.group_name(plan)}.{host}" for host in self.hosts(plan.spec)]

    def _lookup(self, name: str) -> Any:
        with self._lock:
            handle = self._handles.get(name)
        if handle is not None:
            return handle
        try:
            handle = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:  # no live actor of that name
            return None
        with self._lock:
            self._handles[name] = handle
        return handle

    def _forget(self, name: str) -> None:
        with self._lock:
            self._handles.pop(name, None)

    def _ref(self, plan: AttemptPlan, infos: Sequence[HostInfo] = ()) -> BackendRef:
        ref: BackendRef = {
            "address": self.options.address,
            "namespace": NAMESPACE,
            "actors": self.actor_names(plan),
        }
        if plan.spec.resources.instance_count > 1:
            ref["placement_group"] = self.group_name(plan)
        if infos:
            ref["hosts"] = {
                i.host: {"node_ip": i.node_ip, "node_id": i.node_id, "pid": i.pid} for i in infos
            }
        return ref

    # -- launch -----------------------------------------------------------------------------

    def _kill(self, names: Sequence[str]) -> None:
        """Kill the actors of ``names`` there are, and return once none of the names
        resolves any more (or after ``call_timeout_s``).

        ``ray.kill`` only sends the request: for a moment afterwards the name still
        resolves, and an actor of the same name — the launch again of an attempt or
        replica whose launch a crash interrupted — is refused as already taken.
        """
        killed: list[str] = []
        for name in names:
            handle = self._lookup(name)
            self._forget(name)
            if handle is not None:
                with contextlib.suppress(RayError, ValueError):
                    ray.kill(handle, no_restart=True)
                killed.append(name)
        deadline = time.monotonic() + self.options.call_timeout_s
        while killed and time.monotonic() < deadline:
            time.sleep(0.05)
            killed = [name for name in killed if self._resolves(name)]

    @staticmethod
    def _resolves(name: str) -> bool:
        """Whether Ray has a live actor of this name (not cached: it asks the cluster)."""
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return False
        return True

    def _discard(self, plan: AttemptPlan) -> None:
        """Kill the attempt's actors and remove its placement group, whatever is left."""
        for name in self.actor_names(plan):
            self._pending_since.pop(name, None)
        self._kill(self.actor_names(plan))
        if plan.spec.resources.instance_count > 1:
            with contextlib.suppress(RayError, ValueError):  # ValueError: no such group
                remove_placement_group(get_placement_group(self.group_name(plan)))
        self._stopping.discard(self.group_name(plan))

    def _placement_group(self, plan: AttemptPlan) -> PlacementGroup:
        res = plan.spec.resources
        bundle: dict[str, float] = {"CPU": float(res.cpus)}
        if res.gpus:
            bundle["GPU"] = float(res.gpus)
        if res.memory_mb:
            bundle["memory"] = float(res.memory_mb * 2**20)
        group: PlacementGroup = placement_group(
            [dict(bundle) for _ in range(res.instance_count)],
            strategy="SPREAD",
            name=self.group_name(plan),
            lifetime="detached",
        )
        ready, _ = ray.wait([group.ready()], timeout=self.options.placement_timeout_s)
        if not ready:
            raise LaunchFailed(
                f"the Ray cluster could not reserve {res.instance_count} x {bundle} within "
                f"{self.options.placement_timeout_s:.0f} s (cluster resources: "
                f"{_cluster_resources()})"
            )
        return group

    def _task(self, plan: AttemptPlan, index: int) -> HostTask:
        return HostTask(
            job_id=plan.job_id,
            job_name=plan.job_name,
            attempt=plan.attempt,
            spec=plan.spec,
            hosts=self.hosts(plan.spec),
            index=index,
            store_url=self.store_url,
            store_env=self.options.store_env,
            stop_grace_s=self.options.stop_grace_s,
            linger_s=self.options.linger_s,
        )

    def _create(self, plan: AttemptPlan, index: int, group: PlacementGroup | None) -> Any:
        res = plan.spec.resources
        options: dict[str, Any] = {
            "name": self.actor_names(plan)[index],
            "namespace": NAMESPACE,
            "lifetime": "detached",
            "max_restarts": 0,
            "max_task_retries": 0,
            "max_concurrency": 8,  # poll and read_logs answer while prepare works
            "num_cpus": res.cpus,
            "num_gpus": res.gpus,
        }
        if res.memory_mb:
            options["memory"] = res.memory_mb * 2**20
        if group is not None:
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=group, placement_group_bundle_index=index
            )
        return _RemoteWorker.options(**options).remote(self._task(plan, index))

    def launch(self, plan: AttemptPlan) -> BackendRef:
        self._discard(plan)  # what a launch interrupted by a crash left behind
        try:
            group = self._placement_group(plan) if plan.spec.resources.instance_count > 1 else None
            actors = [self._create(plan, i, group) for i in range(len(self.hosts(plan.spec)))]
            infos: list[HostInfo] = ray.get(
                [a.prepare.remote() for a in actors], timeout=self.options.prepare_timeout_s
            )
            if any(info.error for info in infos):
                # No host starts; poll reports the failure and the logs keep the setup output.
                ray.get([a.stop.remote() for a in actors], timeout=self.options.call_timeout_s)
                return self._ref(plan, infos)
            environments = cluster_environments(infos)
            ray.get(
                [a.start.remote(env) for a, env in zip(actors, environments, strict=True)],
                timeout=self.options.prepare_timeout_s,
            )
        except LaunchFailed:
            self._discard(plan)
            raise
        except GetTimeoutError as exc:
            self._discard(plan)
            raise LaunchFailed(
                f"the attempt's Ray actors did not get ready within "
                f"{self.options.prepare_timeout_s:.0f} s (cluster resources: "
                f"{_cluster_resources()})"
            ) from exc
        except RayError as exc:
            self._discard(plan)
            raise LaunchFailed(f"starting the attempt on Ray failed: {_cause(exc)}") from exc
        return self._ref(plan, infos)

    # -- watch ------------------------------------------------------------------------------

    def _call(self, plan: AttemptPlan, method: str, *args: Any, timeout: float) -> list[Any]:
        """``method`` on every host's actor: its result, or None where there is no actor,
        or the :class:`RayError` it raised (``GetTimeoutError`` when it is slow)."""
        names = self.actor_names(plan)
        handles = [self._lookup(name) for name in names]
        pending = {
            i: getattr(h, method).remote(*args) for i, h in enumerate(handles) if h is not None
        }
        results: list[Any] = [None] * len(names)
        deadline = time.monotonic() + timeout
        for i, object_ref in pending.items():
            try:
                results[i] = ray.get(object_ref, timeout=max(deadline - time.monotonic(), 0.01))
            except RayError as exc:
                if isinstance(exc, RayActorError):
                    self._forget(names[i])
                results[i] = exc
        return results

    def poll(self, plan: AttemptPlan, ref: BackendRef) -> Poll:
        hosts, names = self.hosts(plan.spec), self.actor_names(plan)
        results = self._call(plan, "poll", timeout=self.options.call_timeout_s)
        launched = bool(ref.get("actors"))
        if all(r is None for r in results):
            if launched:
                message = (
                    "the attempt's Ray actors are gone (the Ray cluster restarted or their "
                    "node died)"
                )
                return Poll("exited", ref, AttemptExit("lost", message=message))
            return Poll("not_launched")
        polls: list[Poll] = []
        interrupted = False
        now = time.monotonic()
        for host, name, result in zip(hosts, names, results, strict=True):
            if isinstance(result, HostPoll):
                self._pending_since.pop(name, None)
                stale = result.phase in ("created", "prepared")
                interrupted |= (
                    not launched and stale and result.phase_age_s > self.options.launch_grace_s
                )
                polls.append(result.poll)
            elif isinstance(result, GetTimeoutError):  # busy, or not scheduled yet
                since = self._pending_since.setdefault(name, now)
                interrupted |= not launched and now - since > self.options.launch_grace_s
                polls.append(Poll("launching"))
            else:
                why = f"its Ray actor died: {_cause(result)}" if result else "its actor is gone"
                polls.append(Poll("exited", exit=AttemptExit("lost", message=f"{host}: {why}")))
        found = ref if launched else self._ref(plan)
        if any(p.state == "launching" for p in polls):
            if interrupted or (not launched and any(p.state == "exited" for p in polls)):
                self._discard(plan)
                message = "the attempt's launch was interrupted (the control plane stopped)"
                return Poll("exited", found, AttemptExit("lost", message=message))
            return Poll("launching")
        exits = [p.exit for p in polls if p.exit is not None]
        if len(exits) < len(polls):
            if any(not e.succeeded for e in exits):
                self._stop_rest(plan, polls)
            return Poll("running", found)
        return Poll("exited", found, combine_exits(hosts, exits))

    def _stop_rest(self, plan: AttemptPlan, polls: Sequence[Poll]) -> None:
        """A host failed: stop the others (once), as a failed host fails the attempt."""
        key = self.group_name(plan)
        if key in self._stopping:
            return
        self._stopping.add(key)
        for name, p in zip(self.actor_names(plan), polls, strict=True):
            handle = self._lookup(name)
            if p.state == "running" and handle is not None:
                handle.stop.remote()

    def read_logs(
        self, plan: AttemptPlan, ref: BackendRef, offsets: dict[str, int], final: bool
    ) -> LogLines:
        hosts = self.hosts(plan.spec)

        def key(host: str, stream: str) -> str:
            return stream if host == hosts[0] else f"{host}/{stream}"

        per_host = [
            {s: offsets[key(h, s)] for s in ("stdout", "stderr") if key(h, s) in offsets}
            for h in hosts
        ]
        names = self.actor_names(plan)
        handles = [self._lookup(name) for name in names]
        pending = [
            (h, handle.read_logs.remote(o, final))
            for h, o, handle in zip(hosts, per_host, handles, strict=True)
            if handle is not None
        ]
        lines: list[tuple[str, str]] = []
        new_offsets = dict(offsets)
        for host, object_ref in pending:
            try:
                batch: LogLines = ray.get(object_ref, timeout=self.options.call_timeout_s)
            except RayError:
                continue  # a gone or busy host: its lines come with a later read, or never
            prefix = "" if host == hosts[0] else f"[{host}] "
            lines += [(stream, prefix + text) for stream, text in batch.lines]
            for stream, value in batch.offsets.items():
                new_offsets[key(host, stream)] = value
        return LogLines(lines, new_offsets)

    def stop(self, plan: AttemptPlan, ref: BackendRef) -> None:
        for name in self.actor_names(plan):
            handle = self._lookup(name)
            if handle is not None:
                handle.stop.remote()

    # -- results ----------------------------------------------------------------------------

    def collect(self, plan: AttemptPlan, ref: BackendRef, succeeded: bool) -> Collected:
        """algo-1 stores its model/ and output/ (as SageMaker keeps algo-1's); every host
        is asked for its output/failure, and the first one found (in host order) is used."""
        hosts, names = self.hosts(plan.spec), self.actor_names(plan)
        results: list[Collected | None] = []
        for i, (host, name) in enumerate(zip(hosts, names, strict=True)):
            store = succeeded and i == 0
            handle = self._lookup(name)
            try:
                if handle is None:
                    raise RuntimeError("its Ray actor is gone")
                timeout = self.options.collect_timeout_s if store else self.options.call_timeout_s
                results.append(ray.get(handle.collect.remote(store), timeout=timeout))
            except (RayError, RuntimeError) as exc:
                if store:
                    raise RuntimeError(f"storing {host}'s results failed: {_cause(exc)}") from exc
                results.append(None)
        failure = None
        for host, got in zip(hosts, results, strict=True):
            if got is not None and got.failure:
                failure = got.failure if len(hosts) == 1 else f"{host}: {got.failure}"
                break
        first = results[0]
        return Collected(
            first.model if first is not None else None,
            first.outputs if first is not None else [],
            failure[:FAILURE_LIMIT] if failure else None,
        )

    def cleanup(self, plan: AttemptPlan, ref: BackendRef) -> None:
        self._call(plan, "cleanup", timeout=self.options.call_timeout_s)
        self._discard(plan)

    # -- replicas ---------------------------------------------------------------------------
    # Each replica attempt (of an endpoint, for one) is a detached actor named by the
    # control plane (``modelyard.<tag>.ep.<replica id>.<attempt>``) running ``worker``, a
    # class of the domain's (see modelyard.endpoints.ray_replicas): ``worker(task)`` with
    # ``start() -> dict``, ``poll() -> str | None`` (None while it runs, else how it
    # ended) and ``stop()``. The class and task arrive pickled by reference, so this
    # module imports no domain.

    def replica_start(
        self, name: str, worker: type, task: Any, num_cpus: float, timeout_s: float
    ) -> dict[str, Any]:
        """Create the replica's actor (spread over the nodes) and start its server.

        Returns what ``worker.start`` returns (``{"host", "port", "pid", "node_id"}`` for
        an endpoint replica); :class:`LaunchFailed` (the actor killed) when it cannot be
        placed or started within ``timeout_s``.
        """
        self.replica_kill(name)  # what a launch interrupted by a crash left behind
        try:
            handle: Any = (
                remote_class(worker)
                .options(
                    name=name,
                    namespace=NAMESPACE,
                    lifetime="detached",
                    max_restarts=0,
                    max_task_retries=0,
                    max_concurrency=4,  # poll and stop answer while start fetches the model
                    num_cpus=num_cpus,
                    scheduling_strategy="SPREAD",
                )
                .remote(task)
            )
            with self._lock:
                self._handles[name] = handle
            info: dict[str, Any] = ray.get(handle.start.remote(), timeout=timeout_s)
        except GetTimeoutError as exc:
            self.replica_kill(name)
            raise LaunchFailed(
                f"the replica's Ray actor did not start within {timeout_s:.0f} s "
                f"({num_cpus:g} CPU wanted; cluster resources: {_cluster_resources()})"
            ) from exc
        except RayError as exc:
            self.replica_kill(name)
            raise LaunchFailed(f"starting the replica on Ray failed: {_cause(exc)}") from exc
        return info

    def replica_poll(self, name: str) -> tuple[str, str]:
        """``("running", "")``, ``("busy", "")`` (no answer in time), ``("exited", how)``
        (the server ended; the actor lives) or ``("gone", why)`` (no actor)."""
        handle = self._lookup(name)
        if handle is None:
            return "gone", "its Ray actor is gone (killed, or its node died)"
        try:
            ended = ray.get(handle.poll.remote(), timeout=self.options.call_timeout_s)
        except GetTimeoutError:
            return "busy", ""
        except RayError as exc:
            self._forget(name)
            return "gone", f"its Ray actor died: {_cause(exc)}"
        return ("exited", str(ended)) if ended is not None else ("running", "")

    def replica_stop(self, name: str) -> None:
        """Ask the replica's server to stop gracefully (no wait)."""
        handle = self._lookup(name)
        if handle is not None:
            handle.stop.remote()

    def replica_kill(self, name: str) -> None:
        """Kill the replica's actor (and with it its server), if there is one; return once
        its name is free (see :meth:`_kill`)."""
        self._kill([name])


def cluster_environments(infos: Sequence[HostInfo]) -> list[dict[str, str]]:
    """The data-parallel variables for each host (nothing for a single-host job).

    ``MODELYARD_HOST_ADDRESSES``: JSON ``{"algo-1": "<node ip>", …}``.
    ``MODELYARD_XGB_TRACKER_URI`` / ``_PORT``: XGBoost's collective tracker, running on
    algo-1's node (absent where XGBoost is not installed there); pass them as
    ``dmlc_tracker_uri``/``dmlc_tracker_port`` with ``dmlc_task_id=SM_CURRENT_HOST`` to
    ``xgboost.collective.CommunicatorContext``.
    ``MODELYARD_LGBM_MACHINES``: ``ip:port,…`` in host order, and
    ``MODELYARD_LGBM_LOCAL_LISTEN_PORT``: this host's port — LightGBM's ``machines`` and
    ``local_listen_port`` (with ``num_machines=len(SM_HOSTS)``, ``tree_learner="data"``).
    """
    if len(infos) < 2:
        return [{} for _ in infos]
    common = {
        HOST_ADDRESSES_ENV: json.dumps({i.host: i.node_ip for i in infos}),
        LGBM_MACHINES_ENV: ",".join(f"{i.node_ip}:{i.lgbm_port}" for i in infos),
    }
    tracker = infos[0].xgb_tracker
    if tracker is not None:
        common[XGB_TRACKER_URI_ENV] = tracker["uri"]
        common[XGB_TRACKER_PORT_ENV] = tracker["port"]
    return [{**common, LGBM_PORT_ENV: str(i.lgbm_port)} for i in infos]


class _ServerManager(BaseManager):
    pass


_ServerManager.register("RayDriver", callable=RayDriver)


def _watch_parent(parent: int) -> None:
    """End this process once the control plane that started it is gone."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def serve(socket_path: str, address: str, parent: int, authkey: bytes) -> int:
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        connect(address)
    except ConfigurationError as exc:
        print(f"error: {exc}".replace("\n", " "), flush=True)
        return 1
    # After ray.init, which installs a handler of its own: SIGTERM ends this at once.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server = _ServerManager(address=socket_path, authkey=authkey).get_server()
    print("ready", flush=True)
    os.dup2(2, 1)  # later output (Ray's) goes to stderr; the parent stops reading stdout
    server.serve_forever()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        sys.stderr.write(
            "usage: python -m modelyard.compute.backends.ray_driver <socket> <address> <parent>\n"
        )
        return 2
    authkey = bytes.fromhex(sys.stdin.readline().strip())
    return serve(argv[1], argv[2], int(argv[3]), authkey)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
