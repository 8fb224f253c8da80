"""Settings, read from ``MODELYARD_*`` environment variables.

Embedded defaults need nothing: metadata in SQLite and artifacts in a folder, both under
``MODELYARD_HOME`` (default ``~/.modelyard``). A team points the same code at PostgreSQL
and S3-compatible storage by URL.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


class Settings(BaseModel):
    """Where the platform keeps its state and how the server is exposed."""

    home: Path = Field(description="Root for embedded state (SQLite file, artifact folder).")
    db_url: str = Field(description="SQLAlchemy URL of the metadata store.")
    artifacts_url: str = Field(description="Artifact store URL: a folder path, file://… or s3://…")
    host: str = "127.0.0.1"
    port: int = 8765
    auth: bool = Field(False, description="Require API tokens on every request.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra Host header values accepted besides the bind address and localhost.",
    )
    cors_origins: list[str] = Field(default_factory=list, description="Empty: CORS closed.")
    max_upload_bytes: int = 64 * 1024**3
    replica_orphan_grace_s: float = Field(
        30.0,
        ge=0,
        description=(
            "How long an endpoint replica keeps running after the control plane that owns "
            "it died without stopping it (MODELYARD_REPLICA_ORPHAN_GRACE_S): a restart "
            "within it re-attaches the replica; past it the replica stops itself."
        ),
    )
    trusted_types: list[str] = Field(
        default_factory=list,
        description=(
            "Extra fully qualified type names that skops model files may hold "
            "(MODELYARD_TRUSTED_TYPES, comma-separated), beyond modelyard's built-in list."
        ),
    )

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from the environment; explicit ``overrides`` win (``None`` = unset)."""
        home = Path(_env("MODELYARD_HOME") or Path.home() / ".modelyard").expanduser()
        values: dict[str, object] = {
            "home": home,
            "db_url": _env("MODELYARD_DB") or f"sqlite:///{home / 'modelyard.db'}",
            "artifacts_url": _env("MODELYARD_ARTIFACTS") or str(home / "artifacts"),
            "auth": (_env("MODELYARD_AUTH") or "").lower() in {"1", "true", "yes", "on"},
            "allowed_hosts": [h for h in (_env("MODELYARD_ALLOWED_HOSTS") or "").split(",") if h],
            "cors_origins": [o for o in (_env("MODELYARD_CORS_ORIGINS") or "").split(",") if o],
            "trusted_types": [
                t.strip() for t in (_env("MODELYARD_TRUSTED_TYPES") or "").split(",") if t.strip()
            ],
        }
        if (grace := _env("MODELYARD_REPLICA_ORPHAN_GRACE_S")) is not None:
            values["replica_orphan_grace_s"] = float(grace)
        if (port := _env("MODELYARD_PORT")) is not None:
            values["port"] = int(port)
        if (host := _env("MODELYARD_HOST")) is not None:
            values["host"] = host
        if "home" in overrides and overrides["home"] is not None:
            home = Path(str(overrides["home"])).expanduser()
            values["home"] = home
            values["db_url"] = _env("MODELYARD_DB") or f"sqlite:///{home / 'modelyard.db'}"
            values["artifacts_url"] = _env("MODELYARD_ARTIFACTS") or str(home / "artifacts")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
