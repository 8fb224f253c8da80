"""Alembic environment: runs on the connection handed over by :func:`upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import modelyard.core.events  # noqa: F401  (core tables)
from modelyard.core import control_store, idempotency_store  # noqa: F401  (core tables)
from modelyard.core.db import Base
from modelyard.domains import operations

operations()  # imports every domain, registering its tables on Base.metadata
target_metadata = Base.metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic revision --autogenerate` from the command line
    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///:memory:"
    connection = create_engine(url).connect()

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
