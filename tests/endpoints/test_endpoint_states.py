"""Replica and rollout transition tables, the placement registry, and the controller's
principal in the audit log and the outbox."""

from __future__ import annotations

import pytest
from epkit import sklearn_version
from sqlalchemy import select

from conftest import Plane
from modelyard.core.events import EventRow
from modelyard.core.states import IllegalTransition
from modelyard.endpoints.placement import (
    LocalPlacement,
    PlacementContext,
    Placements,
    RayPlacement,
    placement_kind,
)
from modelyard.endpoints.states import REPLICA, ROLLOUT, ROLLOUT_PHASE
from modelyard.endpoints.store import ReplicaRow, RolloutRow
from modelyard.errors import ConfigurationError
from modelyard.security.schemas import ListAudit
from modelyard.security.service import LOCAL_USER


def test_replica_moves_outside_the_table_raise_and_change_nothing() -> None:
    row = ReplicaRow(id="rep_1", state="Stopping")
    with pytest.raises(IllegalTransition, match="cannot go from Stopping to Ready"):
        REPLICA.advance(row, "Ready", what="replica rep_1")
    assert row.state == "Stopping"
    row.state = "Draining"
    with pytest.raises(IllegalTransition):
        REPLICA.advance(row, "Pending", what="replica rep_1")  # a drained replica stays out
    REPLICA.advance(row, "Stopping", what="replica rep_1")
    assert row.state == "Stopping" and REPLICA.final == {"Stopping"}


def test_a_finished_rollout_cannot_move_again() -> None:
    ro = RolloutRow(id="ro_1", state="InProgress")
    ROLLOUT.advance(ro, "RolledBack", what="rollout ro_1")
    with pytest.raises(IllegalTransition, match="it is final"):
        ROLLOUT.advance(ro, "Completed", what="rollout ro_1")
    assert ro.state == "RolledBack"
    assert not ROLLOUT_PHASE.allows("done", "baking")
    assert ROLLOUT_PHASE.allows("baking", "baking")  # the next traffic step


def test_placements_are_chosen_by_kind_and_an_unknown_kind_is_refused(plane: Plane) -> None:
    assert [placement_kind(b) for b in ("local", "ray", "ray://head:10001", "k8s://c/ns")] == [
        "local",
        "ray",
        "ray",
        "k8s",
    ]
    runtime = plane.runtime
    context = PlacementContext(
        settings=runtime.settings,
        artifacts=runtime.artifacts,
        cache=None,  # type: ignore[arg-type]  # nothing is launched here
        secrets=None,  # type: ignore[arg-type]
        owner_file=plane.home / "endpoints" / "controller.json",
    )
    placements = Placements(context)
    try:
        local = placements.of("local")
        assert isinstance(local, LocalPlacement) and placements.of("local") is local
        assert isinstance(placements.of("ray://head:10001"), RayPlacement)
        with pytest.raises(ConfigurationError, match="no replica placement for backend"):
            placements.of("k8s://cluster/ns")
    finally:
        placements.close()


def test_the_controller_acts_as_its_system_principal(plane: Plane) -> None:
    c = plane.client
    v = sklearn_version(c, plane.folder)
    c.endpoints.create("audited", [{"model": "churn", "version": v}])
    c.endpoints.wait("audited")
    runtime = plane.runtime
    audit = runtime.execute(
        runtime.operations["security.list_audit"],
        ListAudit(operation="endpoint.status"),
        runtime.principal(None),
        origin="test",
    )
    seen = {(e.actor, e.origin, e.target) for e in audit.events}
    assert seen == {
        ("system:endpoints.controller", "controller:endpoints.controller", "endpoint:audited")
    }
    with runtime.db.transaction(write=False) as session:
        moves = [
            (e.actor, e.payload["from"], e.payload["to"])
            for e in session.scalars(
                select(EventRow).where(EventRow.type == "endpoint.replica_state")
            )
        ]
        created = session.scalars(
            select(EventRow.actor).where(EventRow.type == "endpoint.created")
        ).all()
    actor = "system:endpoints.controller"
    assert moves[:3] == [
        (actor, "", "Pending"),
        (actor, "Pending", "Starting"),
        (actor, "Starting", "Ready"),
    ]
    assert set(created) == {LOCAL_USER}  # the service's events name the user who asked
