"""Replica isolation: each replica attempt answers only requests carrying its secret.

A model server started as an endpoint replica refuses (403) every request without the
header ``X-Modelyard-Replica-Secret: <secret>``, ``/ping`` included, and (421) a ``Host``
other than its bind address or loopback. The secret of attempt ``n`` of replica ``R`` is
``HMAC-SHA256(key, "R/n")`` with a per-home key kept in ``$MODELYARD_HOME/endpoints/
replica.key`` (mode 0600, created on first use). The controller hands it to the model
server in its environment (``MODELYARD_REPLICA_SECRET``, through the supervisor's
``launch.json`` in a 0700 folder, or the Ray actor's task), never on a command line; the
router and the controller's probes derive it again from the row (id and attempt), so no
secret is stored in the database. A client's own header of that name never reaches a
replica: the router builds the forwarded headers itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from modelyard.serving.settings import SECRET_ENV, SECRET_HEADER

__all__ = ["KEY_FILE", "SECRET_ENV", "SECRET_HEADER", "ReplicaKeys"]

KEY_FILE = "replica.key"


class ReplicaKeys:
    """Derives replica secrets from the home's key (read, or created, once)."""

    def __init__(self, home: Path) -> None:
        self.path = home / "endpoints" / KEY_FILE
        self._key: bytes | None = None

    def _load(self) -> bytes:
        if self._key is None:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # written whole, then linked: a reader sees no key or the complete one, and
                # of two processes creating it at once the first link wins
                tmp = self.path.with_name(f".{KEY_FILE}.{secrets.token_hex(8)}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, secrets.token_bytes(32))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    with contextlib.suppress(FileExistsError):
                        os.link(tmp, self.path)
                finally:
                    tmp.unlink()
            key = self.path.read_bytes()
            if len(key) != 32:
                raise RuntimeError(f"the replica key {self.path} is not 32 bytes; remove it")
            self._key = key
        return self._key

    def secret(self, replica_id: str, attempt: int) -> str:
        """The secret of attempt ``attempt`` of replica ``replica_id`` (64 hex characters)."""
        message = f"{replica_id}/{attempt}".encode()
        return hmac.new(self._load(), message, hashlib.sha256).hexdigest()
