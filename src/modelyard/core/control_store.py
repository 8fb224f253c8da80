"""The tables of the controller kit and the outbox consumer (migration 0010).

``controller_leases``: which process runs each controller (one active controller per
database, by name), until when. ``outbox_cursors``: each consumer's durable position in
the ``events`` table.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.core.db import Base, UTCDateTime, utcnow


class ControllerLeaseRow(Base):
    __tablename__ = "controller_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class OutboxCursorRow(Base):
    __tablename__ = "outbox_cursors"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    # Every event with seq <= position was handled (or given up as a gap, see outbox.py).
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
