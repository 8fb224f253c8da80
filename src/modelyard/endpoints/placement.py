"""Where a replica runs: one interface, an implementation per placement kind.

A variant's ``placement.backend`` names where its replicas run: ``local`` (a model server
under the supervisor on this host: :mod:`modelyard.endpoints.processes`) or a Ray URL
(``ray``, ``ray://host:port``: an actor on the cluster, :mod:`modelyard.endpoints.ray_replicas`).
The controller never tests which: it asks :class:`Placements` for the
:class:`ReplicaPlacement` of a row's ``placement`` and calls it. A new kind (Kubernetes,
say: ``k8s://...``) is one class and a :func:`register_placement` call; :func:`placement_kind`
maps a backend string to its kind by URL scheme.

Everything a placement needs to find a replica again is in its row (id, attempt,
supervisor pid and start time, host and port), so after a control-plane restart
:meth:`ReplicaPlacement.adopt` carries on with a replica that still runs.

(This module belongs in ``modelyard.compute`` once that package exists.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from modelyard.config import Settings
from modelyard.core.artifacts import ArtifactStore
from modelyard.endpoints.processes import STOP_GRACE_S, ModelCache, Replicas
from modelyard.endpoints.replica_auth import ReplicaKeys
from modelyard.endpoints.store import ReplicaRow
from modelyard.errors import ConfigurationError

log = logging.getLogger("modelyard.endpoints")


@dataclass(frozen=True)
class Started:
    """Where a launched attempt listens, and what finds its process again."""

    host: str
    port: int
    supervisor_pid: int | None = None
    supervisor_started: float | None = None
    pid: int | None = None  # the model server's, when known at launch


@dataclass(frozen=True)
class PlacementContext:
    """What every placement of one controller shares."""

    settings: Settings
    artifacts: ArtifactStore
    cache: ModelCache
    secrets: ReplicaKeys
    owner_file: Path


class ReplicaPlacement(Protocol):
    """Starts, watches and stops the replica processes of one placement backend."""

    kind: str

    def launch(self, replica: ReplicaRow, attempt: int, variant: dict[str, Any]) -> Started:
        """Start attempt ``attempt`` of ``replica`` serving ``variant``; raise if it cannot."""
        ...

    def alive(self, replica: ReplicaRow) -> bool:
        """Whether the row's current attempt still runs (unknown counts as alive)."""
        ...

    def adopt(self, replica: ReplicaRow) -> bool:
        """After a controller restart: whether the row's attempt still runs and is kept."""
        ...

    def server_pid(self, replica: ReplicaRow) -> int | None:
        """The model server's pid once it answers ``/ping`` (shown on the replica)."""
        ...

    def exit_message(self, replica: ReplicaRow) -> str:
        """How the attempt ended (asked right after :meth:`alive` said it did)."""
        ...

    def logs(self, replica: ReplicaRow, max_bytes: int = 64 * 1024) -> str:
        """The end of the attempt's model-server log, where the placement keeps one."""
        ...

    def stop(self, replica: ReplicaRow) -> None:
        """Ask the attempt to stop gracefully (in-flight requests finish)."""
        ...

    def kill(self, replica: ReplicaRow) -> None:
        """Stop the attempt now."""
        ...

    def failed(self, replica: ReplicaRow) -> None:
        """The attempt failed to start: free what it still holds."""
        ...

    def remove(self, replica: ReplicaRow) -> None:
        """The replica stopped and its row is gone: remove what is left of it."""
        ...

    def shutdown(self, replicas: list[ReplicaRow]) -> list[str]:
        """The controller stops: stop what must not outlive it; the ids of those stopped
        (their rows go back to ``Pending``, so the next controller starts them again)."""
        ...

    def close(self) -> None: ...


class LocalPlacement:
    """Model servers under the supervisor on this host (placement ``local``)."""

    kind = "local"

    def __init__(self, backend: str, context: PlacementContext) -> None:
        self.backend = backend
        self.context = context
        self.processes = Replicas(context.settings.home)

    def launch(self, replica: ReplicaRow, attempt: int, variant: dict[str, Any]) -> Started:
        model_dir = self.context.cache.path(
            variant["artifact_digest"], variant["artifact_filename"]
        )
        launched = self.processes.launch(
            replica.id,
            attempt,
            model_dir,
            variant["model"],
            int(variant["version"]),
            secret=self.context.secrets.secret(replica.id, attempt),
            owner_file=self.context.owner_file,
            orphan_grace_s=self.context.settings.replica_orphan_grace_s,
        )
        return Started(
            host=replica.host,
            port=launched.port,
            supervisor_pid=launched.supervisor_pid,
            supervisor_started=launched.supervisor_started,
        )

    def alive(self, replica: ReplicaRow) -> bool:
        return self.processes.alive(replica.supervisor_pid, replica.supervisor_started)

    def adopt(self, replica: ReplicaRow) -> bool:
        # The supervisor runs in a session of its own: it outlived the last controller.
        return self.alive(replica)

    def server_pid(self, replica: ReplicaRow) -> int | None:
        return self.processes.server_pid(replica.id, replica.attempt)

    def exit_message(self, replica: ReplicaRow) -> str:
        return self.processes.exit_message(replica.id, replica.attempt)

    def logs(self, replica: ReplicaRow, max_bytes: int = 64 * 1024) -> str:
        return self.processes.log_tail(replica.id, replica.attempt, max_bytes)

    def stop(self, replica: ReplicaRow) -> None:
        self.processes.stop(
            replica.id, replica.attempt, replica.supervisor_pid, replica.supervisor_started
        )

    def kill(self, replica: ReplicaRow) -> None:
        self.processes.kill(
            replica.id, replica.attempt, replica.supervisor_pid, replica.supervisor_started
        )

    def failed(self, replica: ReplicaRow) -> None:
        """Nothing: a local attempt that failed has exited (or was killed)."""

    def remove(self, replica: ReplicaRow) -> None:
        self.processes.remove(replica.id)

    def shutdown(self, replicas: list[ReplicaRow], grace_s: float = STOP_GRACE_S) -> list[str]:
        """Stop every local replica process of this home: gracefully (in-flight requests
        finish), killed after ``grace_s``."""
        rows = [r for r in replicas if r.supervisor_pid is not None]

        def running() -> list[ReplicaRow]:
            return [r for r in rows if self.alive(r)]

        for r in running():
            self.stop(r)
        deadline = time.monotonic() + grace_s
        while running() and time.monotonic() < deadline:
            time.sleep(0.05)
        for r in running():
            self.kill(r)
        return [r.id for r in rows]

    def close(self) -> None:
        self.processes.close()


class RayPlacement:
    """Ray actors on a cluster (placement ``ray`` or ``ray://host:port``)."""

    kind = "ray"

    def __init__(self, backend: str, context: PlacementContext) -> None:
        from modelyard.endpoints.ray_replicas import RayReplicas  # imports no Ray

        self.backend = backend
        self.ray = RayReplicas(backend, context.artifacts, context.settings.home)

    def launch(self, replica: ReplicaRow, attempt: int, variant: dict[str, Any]) -> Started:
        num_cpus = float(((variant.get("placement") or {}).get("num_cpus")) or 1.0)
        info = self.ray.launch(replica.id, attempt, variant, num_cpus)
        return Started(host=str(info["host"]), port=int(info["port"]), pid=int(info["pid"]))

    def alive(self, replica: ReplicaRow) -> bool:
        return self.ray.alive(replica.id, replica.attempt)

    def adopt(self, replica: ReplicaRow) -> bool:
        # The actor is detached and named after the row: looked up again by that name.
        return self.alive(replica)

    def server_pid(self, replica: ReplicaRow) -> int | None:
        return replica.pid  # the actor reported it at launch

    def exit_message(self, replica: ReplicaRow) -> str:
        return self.ray.exit_message(replica.id, replica.attempt)

    def logs(self, replica: ReplicaRow, max_bytes: int = 64 * 1024) -> str:
        return ""  # on the node, in Ray's log folder

    def stop(self, replica: ReplicaRow) -> None:
        if replica.attempt > 0:
            self.ray.stop(replica.id, replica.attempt)

    def kill(self, replica: ReplicaRow) -> None:
        if replica.attempt > 0:
            self.ray.kill(replica.id, replica.attempt)

    def failed(self, replica: ReplicaRow) -> None:
        self.kill(replica)  # its actor would hold its CPUs

    def remove(self, replica: ReplicaRow) -> None:
        self.kill(replica)  # the actor outlives its stopped server

    def shutdown(self, replicas: list[ReplicaRow]) -> list[str]:
        return []  # they keep running: the next controller re-attaches them

    def close(self) -> None:
        """Nothing: the Ray driver is shared with the jobs and outlives this."""


PlacementFactory = Callable[[str, PlacementContext], ReplicaPlacement]
_REGISTRY: dict[str, PlacementFactory] = {}


def register_placement(kind: str, factory: PlacementFactory) -> None:
    """Make backends of ``kind`` (see :func:`placement_kind`) run on ``factory``'s placements."""
    _REGISTRY[kind] = factory


register_placement("local", LocalPlacement)
register_placement("ray", RayPlacement)


def placement_kind(backend: str) -> str:
    """The kind of a placement backend string: ``local``, else its URL scheme (``ray``)."""
    if backend in ("local", "ray"):
        return backend
    return urlsplit(backend).scheme


class Placements:
    """The placement of each backend string one controller met (created on first use)."""

    def __init__(self, context: PlacementContext) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._by_backend: dict[str, ReplicaPlacement] = {}

    def of(self, backend: str) -> ReplicaPlacement:
        with self._lock:
            found = self._by_backend.get(backend)
            if found is None:
                factory = _REGISTRY.get(placement_kind(backend))
                if factory is None:
                    raise ConfigurationError(
                        f"no replica placement for backend {backend!r}; "
                        f"known kinds: {', '.join(sorted(_REGISTRY))}"
                    )
                found = self._by_backend[backend] = factory(backend, self.context)
            return found

    def for_row(self, replica: ReplicaRow) -> ReplicaPlacement:
        return self.of(replica.placement)

    def shutdown(self, replicas: Iterable[ReplicaRow]) -> list[str]:
        """Every placement's :meth:`ReplicaPlacement.shutdown` for its rows."""
        groups: dict[str, list[ReplicaRow]] = {}
        for r in replicas:
            groups.setdefault(r.placement, []).append(r)
        stopped: list[str] = []
        for backend, rows in groups.items():
            try:
                stopped += self.of(backend).shutdown(rows)
            except Exception:
                log.exception("stopping the replicas of placement %s", backend)
        return stopped

    def close(self) -> None:
        with self._lock:
            placements, self._by_backend = list(self._by_backend.values()), {}
        for placement in placements:
            placement.close()
