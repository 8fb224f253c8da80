"""Replica and rollout transition tables, the placement registry, and the controller's
principal in the audit log and the outbox."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from epkit import sklearn_version, stop_all_replicas
from sqlalchemy import select

from conftest import Plane
from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.core.events import EventRow
from modelyard.core.states import IllegalTransition
from modelyard.endpoints.controller import EndpointController
from modelyard.endpoints.placement import (
    LocalPlacement,
    PlacementContext,
    Placements,
    RayPlacement,
    placement_kind,
)
from modelyard.endpoints.states import REPLICA, ROLLOUT, ROLLOUT_PHASE, move_endpoint
from modelyard.endpoints.store import EndpointRow, ReplicaRow, RolloutRow
from modelyard.errors import ConfigurationError
from modelyard.runtime import Runtime
from modelyard.security.schemas import ListAudit
from modelyard.security.service import LOCAL_USER, local_principal
from testkit import make_settings

WAIT = 10.0  # seconds for what should happen within a poll or two


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


CREATE_ELSEWHERE = """
import sys
from modelyard.config import Settings
from modelyard.endpoints.schemas import CreateEndpoint
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal

runtime = Runtime(Settings.from_env(home=sys.argv[1]))
req = CreateEndpoint(name="elsewhere", variants=[{"model": "churn", "version": sys.argv[2]}])
runtime.execute(
    runtime.operations["endpoints.create_endpoint"], req, local_principal(), origin="test"
)
runtime.close()
"""


def test_an_endpoint_created_by_another_process_wakes_the_controller(tmp_path: Path) -> None:
    """The other process runs no controller and cannot wake this one in memory: the
    ``endpoint.created`` outbox event does (the resync is an hour away)."""
    settings = make_settings(tmp_path)
    runtime = Runtime(settings)
    controller = EndpointController(runtime, resync_s=3600)
    try:
        v = sklearn_version(Client(EmbeddedTransport(runtime, local_principal())), tmp_path)
        assert controller.start() is True
        assert controller.wait_idle(WAIT)  # the start's resync found nothing
        child = subprocess.run(
            [sys.executable, "-c", CREATE_ELSEWHERE, str(settings.home), str(v)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == 0, child.stderr

        def replicas() -> list[str]:
            with runtime.db.transaction(write=False) as session:
                return list(
                    session.scalars(
                        select(ReplicaRow.state)
                        .join(EndpointRow, EndpointRow.id == ReplicaRow.endpoint_id)
                        .where(EndpointRow.name == "elsewhere")
                    )
                )

        deadline = time.monotonic() + WAIT
        while not replicas():
            assert time.monotonic() < deadline, "the controller never looked at the endpoint"
            time.sleep(0.05)
    finally:
        controller.stop()
        runtime.close()
        stop_all_replicas(settings.home)


def test_an_endpoint_being_deleted_cannot_come_back_into_service() -> None:
    row = EndpointRow(id="ep_1", name="gone", status="Updating")
    move_endpoint(row, "Updating")  # staying is no move
    move_endpoint(row, "Deleting")
    with pytest.raises(IllegalTransition, match="endpoint gone cannot go from Deleting"):
        move_endpoint(row, "InService")
    assert row.status == "Deleting"
    with pytest.raises(IllegalTransition):
        move_endpoint(EndpointRow(id="ep_2", name="new", status="Creating"), "Updating")
