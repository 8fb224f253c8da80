"""The data plane of one runtime: its router and its capture writer.

The control plane's HTTP route, the embedded SDK and the endpoints controller of the
same :class:`~modelyard.runtime.Runtime` share one :class:`DataPlane`, so the router's
counters that the controller reads for alarms are the ones traffic updated.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any, Protocol

from modelyard.config import Settings
from modelyard.core.artifacts import ArtifactStore
from modelyard.core.db import Database
from modelyard.endpoints.capture import Capturer
from modelyard.endpoints.replica_auth import ReplicaKeys
from modelyard.endpoints.router import Router


class HasStores(Protocol):
    db: Database
    artifacts: ArtifactStore
    settings: Settings


class DataPlane:
    def __init__(self, db: Database, artifacts: ArtifactStore, home: Path) -> None:
        self.capturer = Capturer(db, artifacts)
        self.router = Router(db, self.capturer, keys=ReplicaKeys(home))

    def close(self) -> None:
        self.router.close()
        self.capturer.close()


_planes: weakref.WeakKeyDictionary[Any, DataPlane] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def plane_for(runtime: HasStores) -> DataPlane:
    """The runtime's data plane (created on first use)."""
    with _lock:
        plane = _planes.get(runtime)
        if plane is None:
            plane = DataPlane(runtime.db, runtime.artifacts, runtime.settings.home)
            _planes[runtime] = plane
        return plane


def close_plane(runtime: HasStores) -> None:
    with _lock:
        plane = _planes.pop(runtime, None)
    if plane is not None:
        plane.close()


def dropped_events() -> int:
    """Capture events dropped (queue full) by every data plane of this process."""
    with _lock:
        planes = list(_planes.values())
    return sum(p.capturer.dropped for p in planes)
