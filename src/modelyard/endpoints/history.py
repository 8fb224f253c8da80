"""An endpoint's history: its event rows, outbox events, and the controller's audit trail.

Every change is recorded in the transaction that makes it: a row of ``endpoint_events``
(what ``modelyard endpoints events`` lists) and an ``endpoint.<kind>`` outbox event
(:mod:`modelyard.core.events`). A replica's state changes are outbox events only
(``endpoint.replica_state``), not history rows. What the endpoints controller decides
(a status, a scaling, a traffic step, a rollback, a restart) is also an audit event of its
principal ``system:endpoints.controller`` (role ``system``), origin
``controller:endpoints.controller``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from modelyard.core.controllers import system_principal
from modelyard.core.events import write_events
from modelyard.core.ids import new_id
from modelyard.endpoints.store import EndpointEventRow, ReplicaRow
from modelyard.security.service import record_audit

CONTROLLER = "endpoints.controller"
ORIGIN = f"controller:{CONTROLLER}"
# What the controller may do: read endpoints and change what is deployed.
SYSTEM = system_principal(CONTROLLER, ("endpoints.read", "endpoints.deploy"))


def record_event(
    session: Session, endpoint: str, kind: str, message: str, /, *, actor: str, **detail: Any
) -> None:
    """One row of the endpoint's history plus its outbox event, in ``session``."""
    session.add(EndpointEventRow(endpoint=endpoint, kind=kind, message=message, detail=detail))
    write_events(session, actor, [(f"endpoint.{kind}", {"endpoint": endpoint, **detail})])


def controller_event(
    session: Session, endpoint: str, kind: str, message: str, /, **detail: Any
) -> None:
    """:func:`record_event` by the controller, and its audit event."""
    record_event(session, endpoint, kind, message, actor=SYSTEM.user, **detail)
    record_audit(
        session,
        principal=SYSTEM,
        operation=f"endpoint.{kind}",
        target=f"endpoint:{endpoint}",
        origin=ORIGIN,
        result="ok",
        request_id=new_id("ctl"),
        detail={"message": message},
    )


def replica_moved(session: Session, endpoint: str, row: ReplicaRow, before: str) -> None:
    """The outbox event of a replica's state change (``row`` already moved)."""
    write_events(
        session,
        SYSTEM.user,
        [
            (
                "endpoint.replica_state",
                {
                    "endpoint": endpoint,
                    "replica": row.id,
                    "variant": row.variant_id,
                    "from": before,
                    "to": row.state,
                    "attempt": row.attempt,
                },
            )
        ],
    )
