"""The state machines of endpoint replicas and rollouts (:mod:`modelyard.core.states`).

A replica row is added ``Pending``; it is launched (``Starting``), answers ``/ping``
(``Ready``), and goes back to ``Pending`` when its process died (a restart), when a start
failed fewer than ``MAX_FAILURES`` times in a row, or when the control plane that ran it
stopped it. ``Failed`` is a replica that could not start; ``Draining`` one leaving service
(the router no longer chooses it); ``Stopping`` one being stopped, whose row is deleted
once its process is gone.

An endpoint is ``Creating`` until every replica is ready (``InService``), or ``Failed``
when a variant that takes traffic has only failed replicas (``InService`` again once they
are ready); an update that rolls out a new model version makes it ``Updating`` until the
rollout ends; ``Deleting`` stops its replicas, and then its row is removed.

A rollout is ``InProgress`` until it ends ``Completed``, ``RolledBack`` (a replica could not
start, or an alarm fired) or ``Failed`` (the endpoint was deleted). Its phase moves
``starting`` (the new replicas start) → ``baking`` (one bake per traffic step) → ``done``.
"""

from __future__ import annotations

from modelyard.core.states import StateMachine
from modelyard.endpoints.store import EndpointRow

ENDPOINT = StateMachine(
    "endpoint",
    {
        "Creating": {"InService", "Failed", "Deleting"},
        "InService": {"Updating", "Failed", "Deleting"},
        "Updating": {"InService", "Deleting"},
        "Failed": {"InService", "Updating", "Deleting"},
        "Deleting": set(),  # the row is removed once every replica stopped
    },
)


def move_endpoint(row: EndpointRow, status: str) -> None:
    """Set ``row.status`` (staying is no move) if :data:`ENDPOINT` allows it; else raise."""
    if status != row.status:
        ENDPOINT.check(row.status, status, what=f"endpoint {row.name}")
        row.status = status


REPLICA = StateMachine(
    "replica",
    {
        "Pending": {"Starting", "Failed", "Draining", "Stopping"},
        "Starting": {"Ready", "Pending", "Failed", "Draining", "Stopping"},
        "Ready": {"Pending", "Draining", "Stopping"},
        "Failed": {"Draining", "Stopping"},
        "Draining": {"Stopping"},
        "Stopping": set(),  # the row is deleted once its process is gone
    },
)

# Replicas that count towards a variant's ``replicas`` (not leaving service).
LIVE = ("Pending", "Starting", "Ready", "Failed")

ROLLOUT = StateMachine(
    "rollout",
    {
        "InProgress": {"Completed", "RolledBack", "Failed"},
        "Completed": set(),
        "RolledBack": set(),
        "Failed": set(),
    },
)

ROLLOUT_PHASE = StateMachine(
    "rollout phase",
    {
        "starting": {"baking", "done"},
        "baking": {"baking", "done"},  # baking -> baking: the next traffic step
        "done": set(),
    },
)
