"""Endpoint replicas as Ray actors (placement ``ray``), seen from the control plane.

The controller calls this for a replica row whose ``placement`` is a Ray backend URL. As
for jobs, the control plane never imports Ray: the calls go to the Ray driver process of
:mod:`modelyard.compute.backends.ray` (one per cluster address, shared with the jobs), which
runs :class:`~modelyard.endpoints.ray_replica.ReplicaWorker` actors.

Attempt ``n`` of replica ``R`` is the detached actor ``modelyard.<home tag>.ep.R.n`` in
namespace ``modelyard``, created with ``SPREAD`` scheduling (a variant's replicas land on
different nodes where the cluster has room) and ``num_cpus`` from the variant's
placement. The actor starts the model server on its node's IP; the controller stores
that host and port on the row, probes ``/ping`` there, and the router forwards to it.
Everything needed to find the actor again is in the row (placement, id, attempt): after
a control-plane restart the controller looks it up by name and carries on with it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from modelyard.compute.backends.ray import FORWARDED_ENV, RayBackend
from modelyard.core.artifacts import ArtifactStore
from modelyard.endpoints.ray_replica import ReplicaTask, ReplicaWorker
from modelyard.endpoints.replica_auth import ReplicaKeys
from modelyard.errors import ConfigurationError


class RayReplicas:
    """Starts, watches and stops the replica actors of one Ray backend URL."""

    # How long an actor may take to be placed and to start its server (the model's
    # download included; loading it is what the controller's /ping probe waits for).
    start_timeout_s = 120.0

    def __init__(self, url: str, artifacts: ArtifactStore, home: Path) -> None:
        self.url = url
        self.backend = RayBackend(url, artifacts, home)
        self.artifacts = artifacts
        self.keys = ReplicaKeys(home)
        # How an attempt ended, as last polled (the controller asks right after).
        self._ended: dict[str, str] = {}

    def actor_name(self, replica_id: str, attempt: int) -> str:
        return f"modelyard.{self.backend.tag}.ep.{replica_id}.{attempt}"

    def _call(self, method: str, *args: Any) -> Any:
        return self.backend.call(method, *args)

    def launch(
        self, replica_id: str, attempt: int, variant: dict[str, Any], num_cpus: float
    ) -> dict[str, Any]:
        """Start attempt ``attempt`` as an actor: ``{"host", "port", "pid", "node_id"}``."""
        # A driver being started, replaced or backing off is waited for as a job's launch
        # waits for it; only after that does the launch count as a failed start.
        self.backend.wait_for_driver(self.backend.connect_timeout_s)
        if attempt > 1:  # the previous attempt's actor, if its server died but it did not
            with contextlib.suppress(ConfigurationError):
                self._call("replica_kill", self.actor_name(replica_id, attempt - 1))
        task = ReplicaTask(
            replica_id=replica_id,
            attempt=attempt,
            model=variant["model"],
            version=int(variant["version"]),
            artifact_digest=variant["artifact_digest"],
            artifact_filename=variant["artifact_filename"],
            store_url=self.artifacts.url,
            store_env={k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)},
            secret=self.keys.secret(replica_id, attempt),
        )
        info: dict[str, Any] = self._call(
            "replica_start",
            self.actor_name(replica_id, attempt),
            ReplicaWorker,
            task,
            num_cpus,
            self.start_timeout_s,
        )
        return info

    def alive(self, replica_id: str, attempt: int) -> bool:
        """Whether the attempt's actor and server run. Unknown (Ray unreachable, the actor
        busy) counts as alive: a Ray outage must not restart every replica."""
        name = self.actor_name(replica_id, attempt)
        try:
            state, message = self._call("replica_poll", name)
        except ConfigurationError:
            return True
        if state in ("running", "busy"):
            return True
        self._ended[name] = message
        return False

    def exit_message(self, replica_id: str, attempt: int) -> str:
        name = self.actor_name(replica_id, attempt)
        return self._ended.pop(name, "") or "its Ray actor is gone"

    def stop(self, replica_id: str, attempt: int) -> None:
        """Ask the server to stop gracefully (in-flight requests finish)."""
        with contextlib.suppress(ConfigurationError):
            self._call("replica_stop", self.actor_name(replica_id, attempt))

    def kill(self, replica_id: str, attempt: int) -> None:
        """Kill the attempt's actor (its server dies with it)."""
        name = self.actor_name(replica_id, attempt)
        self._ended.pop(name, None)
        with contextlib.suppress(ConfigurationError):
            self._call("replica_kill", name)
