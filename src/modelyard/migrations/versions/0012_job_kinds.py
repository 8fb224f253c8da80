"""job kinds: job_finishes, and every stored job spec names its program

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 23:30:00.000000

A job's program (what its attempts run) is chosen by its kind at submit and stored in its
spec (``spec.program``), so nothing that launches an attempt needs to know the kinds. Jobs
stored before carry none: this fills it in as the code of that time chose it (the
built-in algorithm's module, the entry point, or for ``transform`` jobs the transform
worker), so a job still Pending after the upgrade runs what it would have run.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import modelyard.core.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_jobs = sa.table(
    "jobs", sa.column("id", sa.String()), sa.column("kind", sa.String()), sa.column("spec", _JSON)
)


def _program(kind: str, spec: dict[str, Any]) -> dict[str, str | None] | None:
    if kind == "transform":
        return {"module": "modelyard.transform.worker", "script": None}
    if spec.get("algorithm"):
        return {"module": f"modelyard.algorithms.{spec['algorithm']}", "script": None}
    if spec.get("entry_point"):
        return {"module": None, "script": spec["entry_point"]}
    return None


def upgrade() -> None:
    op.create_table(
        "job_finishes",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("finisher", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("finished_at", modelyard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_finishes_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_finishes")),
    )
    conn = op.get_bind()
    for job_id, kind, spec in conn.execute(sa.select(_jobs.c.id, _jobs.c.kind, _jobs.c.spec)):
        if spec.get("program") is not None:
            continue
        program = _program(kind, spec)
        if program is not None:
            conn.execute(
                _jobs.update().where(_jobs.c.id == job_id).values(spec={**spec, "program": program})
            )


def downgrade() -> None:
    op.drop_table("job_finishes")
