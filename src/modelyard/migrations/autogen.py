"""Write a new migration by comparing the tables in code with the newest schema.

Usage: ``python -m modelyard.migrations.autogen "add jobs"``; review the generated file in
``src/modelyard/migrations/versions/`` before committing it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from modelyard.core.db import create_db_engine
from modelyard.migrations import alembic_config, upgrade


def main(message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_db_engine(f"sqlite:///{Path(tmp) / 'autogen.db'}")
        upgrade(engine)
        cfg = alembic_config()
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True)
        engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m modelyard.migrations.autogen '<message>'")
    main(sys.argv[1])
