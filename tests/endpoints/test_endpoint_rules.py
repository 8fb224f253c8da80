"""The endpoints operations' rules, on SQLite and PostgreSQL (no replica is started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.endpoints.schemas import (
    CreateEndpoint,
    DeleteEndpoint,
    GetEndpoint,
    ListCapture,
    PutMetric,
    UpdateEndpoint,
)
from modelyard.errors import AlreadyExists, Conflict, InvalidInput, ModelyardError, NotFound
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal


def call(runtime: Runtime, name: str, req: Any) -> Any:
    """Run an operation through the embedded transport, without starting the controller."""
    return EmbeddedTransport(runtime, local_principal()).call(name, req)


def register(runtime: Runtime, *, approve: bool = True) -> int:
    sdk = Client(EmbeddedTransport(runtime, local_principal()))
    digest = sdk.artifacts.upload(b"not really a model").digest
    version = sdk.models.register("m", artifact=digest, flavor="sklearn").version
    if approve:
        sdk.models.approve("m", version)
    return version


def spec(version: int, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "version": str(version), **extra}


def audit_count(runtime: Runtime) -> int:
    sdk = Client(EmbeddedTransport(runtime, local_principal()))
    return len(sdk.audit.list(limit=1000).events)


def test_create_pins_versions_and_refuses_what_it_cannot_serve(runtime: Runtime) -> None:
    v1 = register(runtime)
    pending = register(runtime, approve=False)
    ep = call(
        runtime,
        "endpoints.create_endpoint",
        CreateEndpoint.model_validate(
            {"name": "e1", "variants": [spec(v1, weight=3), spec(v1, name="b", weight=1)]}
        ),
    )
    assert ep.status == "Creating"
    assert {v.name: ep.traffic[v.id] for v in ep.variants} == {"primary": 0.75, "b": 0.25}
    graph = Client(EmbeddedTransport(runtime, local_principal())).lineage(
        "endpoint", ep.id, direction="upstream"
    )
    deployed = [e for e in graph.edges if e.relation == "deployed_to"]
    assert [e.source for e in deployed] == [f"model_version:{ep.variants[0].model_version_id}"]
    # "latest" and aliases are pinned to a number.
    by_alias = call(
        runtime,
        "endpoints.create_endpoint",
        CreateEndpoint.model_validate({"name": "e2", "variants": [spec(v1) | {"version": "1"}]}),
    )
    assert by_alias.variants[0].version == v1

    with pytest.raises(AlreadyExists):
        call(runtime, "endpoints.create_endpoint", CreateEndpoint(name="e1", variants=[spec(v1)]))  # type: ignore[list-item]
    # A version that is not approved may not take traffic; as a shadow it may run.
    with pytest.raises(Conflict, match="only an Approved version"):
        call(
            runtime,
            "endpoints.create_endpoint",
            CreateEndpoint.model_validate({"name": "e3", "variants": [spec(pending)]}),
        )
    with pytest.raises(NotFound):
        call(runtime, "endpoints.get_endpoint", GetEndpoint(name="e3"))
    shadowed = call(
        runtime,
        "endpoints.create_endpoint",
        CreateEndpoint.model_validate(
            {"name": "e3", "variants": [spec(v1), spec(pending, name="s", shadow=True)]}
        ),
    )
    assert [v.id in shadowed.traffic for v in shadowed.variants] == [True, False]
    with pytest.raises(NotFound):
        call(
            runtime,
            "endpoints.create_endpoint",
            CreateEndpoint.model_validate({"name": "e4", "variants": [spec(99)]}),
        )


@pytest.mark.parametrize(
    "variants",
    [
        [],
        [{"model": "m", "version": "1", "weight": 0}],
        [{"model": "m", "version": "1"}, {"model": "m", "version": "1"}],  # both "primary"
        [{"model": "m", "version": "1", "shadow": True}],
        [{"model": "m", "version": "1", "replicas": 0}],
        [{"model": "m", "version": "1", "weight": -1}],
        [{"model": "../m", "version": "1"}],
    ],
)
def test_bad_variant_lists_are_refused(variants: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError):
        CreateEndpoint.model_validate({"name": "e", "variants": variants})


def test_updates_roll_out_new_versions_and_apply_the_rest_at_once(runtime: Runtime) -> None:
    v1 = register(runtime)
    v2 = register(runtime)
    call(
        runtime,
        "endpoints.create_endpoint",
        CreateEndpoint.model_validate({"name": "u", "variants": [spec(v1)]}),
    )
    with pytest.raises(Conflict, match="is Creating"):
        call(
            runtime,
            "endpoints.update_endpoint",
            UpdateEndpoint.model_validate({"name": "u", "variants": [spec(v2)]}),
        )
    _force_status(runtime, "u", "InService")
    # Same version, new replica count and capture: no rollout needed.
    same = call(
        runtime,
        "endpoints.update_endpoint",
        UpdateEndpoint.model_validate(
            {"name": "u", "variants": [spec(v1, replicas=2)], "capture": {"percent": 5}}
        ),
    )
    assert same.status == "InService" and same.rollout is not None
    assert same.rollout.state == "Completed" and same.variants[0].replicas == 2
    assert same.capture is not None and same.capture.percent == 5
    # A new version: a rollout starts, both variants deployed, traffic still on the old.
    rolling = call(
        runtime,
        "endpoints.update_endpoint",
        UpdateEndpoint.model_validate(
            {
                "name": "u",
                "variants": [spec(v2)],
                "strategy": {"type": "linear", "linear_steps": 4, "bake_seconds": 1},
            }
        ),
    )
    assert rolling.status == "Updating"
    assert rolling.rollout is not None and rolling.rollout.state == "InProgress"
    assert rolling.rollout.steps == [0.25, 0.5, 0.75, 1.0]
    old = next(v for v in rolling.variants if v.version == v1)
    assert rolling.traffic == {old.id: 1.0} and len(rolling.variants) == 2
    before = audit_count(runtime)
    with pytest.raises(Conflict, match="is Updating"):
        call(
            runtime,
            "endpoints.update_endpoint",
            UpdateEndpoint.model_validate({"name": "u", "variants": [spec(v1)]}),
        )
    assert (
        call(runtime, "endpoints.get_endpoint", GetEndpoint(name="u")).rollout.id
        == rolling.rollout.id
    )
    assert audit_count(runtime) == before + 1  # the refusal is audited, nothing changed
    with pytest.raises(NotFound):
        call(
            runtime,
            "endpoints.update_endpoint",
            UpdateEndpoint.model_validate({"name": "nope", "variants": [spec(v1)]}),
        )

    deleted = call(runtime, "endpoints.delete_endpoint", DeleteEndpoint(name="u"))
    assert deleted.status == "Deleting"
    assert deleted.rollout is not None and deleted.rollout.state == "Failed"


def _force_status(runtime: Runtime, name: str, status: str) -> None:
    from sqlalchemy import update

    from modelyard.endpoints.store import EndpointRow

    with runtime.db.transaction() as session:
        session.execute(update(EndpointRow).where(EndpointRow.name == name).values(status=status))


def test_unknown_endpoints_are_404_for_every_operation(runtime: Runtime) -> None:
    for name, req in [
        ("endpoints.get_endpoint", GetEndpoint(name="ghost")),
        ("endpoints.delete_endpoint", DeleteEndpoint(name="ghost")),
        ("endpoints.list_capture", ListCapture(name="ghost")),
        ("endpoints.put_metric", PutMetric(name="ghost", metric="kpi", value=1.0)),
    ]:
        with pytest.raises(NotFound):
            call(runtime, name, req)


def test_sdk_and_http_refuse_bad_input_and_unknown_endpoints(
    client: Client, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput):
        client.endpoints.create("bad name!", [{"model": "m", "version": 1}])
    with pytest.raises(InvalidInput, match="unique"):
        client.endpoints.create("e", [{"model": "m", "version": 1}, {"model": "m", "version": 1}])
    with pytest.raises(InvalidInput, match="weight above 0"):
        client.endpoints.create("e", [{"model": "m", "version": 1, "weight": 0}])
    with pytest.raises(NotFound):
        client.endpoints.create("e", [{"model": "m", "version": 1}])
    with pytest.raises(NotFound):
        client.endpoints.invoke("ghost", b"[[1]]")
    with pytest.raises(NotFound):
        client.endpoints.describe("ghost")
    assert client.endpoints.list().total == 0


def test_invoking_needs_endpoints_write(runtime: Runtime) -> None:
    sdk = Client(EmbeddedTransport(runtime, local_principal()))
    sdk.users.create("val", "viewer")
    token = sdk.tokens.create(user="val").token
    viewer = Client(EmbeddedTransport(runtime, runtime.principal(token)))
    with pytest.raises(ModelyardError) as refused:
        viewer.endpoints.invoke("anything", b"[[1]]")
    assert refused.value.status == 403
