"""The metadata store: SQLite settings, migrations on both backends, concurrent starts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from modelyard.core.db import Database
from modelyard.errors import ConfigurationError
from modelyard.migrations import current_revision, head_revision, upgrade


def test_sqlite_runs_in_wal_with_full_sync_and_a_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    with db.transaction(write=False) as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.dispose()


def test_migrations_create_every_table(db_url: str) -> None:
    db = Database(db_url)
    assert current_revision(db.engine) is None
    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert {
        "users",
        "api_tokens",
        "audit_events",
        "events",
        "datasets",
        "dataset_versions",
    } <= tables
    upgrade(db.engine)  # idempotent
    db.dispose()


def test_concurrent_starts_migrate_once(db_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        db = Database(db_url)
        try:
            upgrade(db.engine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = Database(db_url)
    assert current_revision(db.engine) == head_revision()
    db.dispose()


def test_unknown_database_scheme_names_the_supported_ones() -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        Database("mysql://localhost/x")
    with pytest.raises(ConfigurationError):
        Database("not a url")
