"""Alembic migrations of the metadata store, applied automatically at start.

Concurrent starts are safe: the upgrade runs inside one write transaction that holds
SQLite's write lock (``BEGIN IMMEDIATE``) or a PostgreSQL advisory lock, so a second
process waits and then finds nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

HERE = Path(__file__).parent
_PG_LOCK_KEY = 0x6D6F64656C79  # "modely"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is already there."""
    cfg = alembic_config()
    if revision == "head" and current_revision(engine) == head_revision():
        return
    with engine.connect().execution_options(modelyard_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
