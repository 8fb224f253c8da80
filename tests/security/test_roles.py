"""The role table (docs/security.md) as enforced: every operation x every role.

The table is written out here by hand, as documented, and compared with what
``Runtime.authorize`` (the one check every transport goes through) allows; the deploy
rules are also checked over HTTP and through MLflow's alias route.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.core.operations import Operation, Principal
from modelyard.domains import operations
from modelyard.endpoints.invoke import INVOKE
from modelyard.errors import PermissionDenied
from modelyard.runtime import Runtime
from modelyard.security.roles import ROLES
from modelyard.security.service import local_principal
from testkit import LiveServer, make_settings

# What only an admin may do: these, and any other operation declared `<domain>.admin`
# (such as the artifact store's scrub).
ADMIN_ONLY = {"security.create_user", "security.list_users", "security.list_audit"}
# Approving what may ship: engineers and admins.
APPROVE = {"models.approve_version", "models.reject_version"}
# Changing what serves traffic: engineers and admins. (operation, alias) for aliases.
DEPLOY = {"endpoints.create_endpoint", "endpoints.update_endpoint", "endpoints.delete_endpoint"}
DEPLOY_ALIASES = {"models.set_alias", "models.delete_alias"}
# What a viewer may change: their own tokens.
VIEWER_WRITES = {"security.create_token", "security.list_tokens", "security.revoke_token"}


def expected(role: str, op: Operation[Any, Any], alias: str | None) -> bool:
    """The documented table."""
    name = op.name
    deploy = name in DEPLOY or (name in DEPLOY_ALIASES and alias == "production")
    if role == "admin":
        return True
    if name in ADMIN_ONLY or op.permission.endswith(".admin"):
        return False
    if role == "engineer":
        return True
    if role == "scientist":
        return name not in APPROVE and not deploy
    assert role == "viewer"
    return not op.mutating or name in VIEWER_WRITES


def _allowed(runtime: Runtime, op: Operation[Any, Any], role: str, req: Any) -> bool:
    principal = Principal(user=f"a-{role}", role=role, permissions=ROLES[role])
    try:
        runtime.authorize(op, principal, origin="test", request_id="req-test", req=req)
    except PermissionDenied:
        return False
    return True


def test_every_operation_for_every_role_matches_the_documented_table(runtime: Runtime) -> None:
    ops = [*operations().values(), INVOKE]
    assert len(ops) > 60
    mismatches = []
    for op in ops:
        aliases: list[str | None] = [None]
        if "alias" in op.input.model_fields:
            aliases = ["production", "staging"]
        for alias in aliases:
            req = op.input.model_construct(alias=alias) if alias else None
            for role in ROLES:
                want = expected(role, op, alias)
                if _allowed(runtime, op, role, req) != want:
                    mismatches.append(f"{role} {op.name} alias={alias}: expected {want}")
    assert mismatches == []
    # The table names only operations that exist.
    names = {op.name for op in ops}
    assert names >= ADMIN_ONLY | APPROVE | DEPLOY | DEPLOY_ALIASES | VIEWER_WRITES


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[LiveServer, Runtime, dict[str, str]]]:
    runtime = Runtime(make_settings(tmp_path, auth=True))
    admin = Client(EmbeddedTransport(runtime, local_principal()))
    tokens = {}
    for role in ("engineer", "scientist"):
        admin.users.create(role[:3], role)  # type: ignore[arg-type]
        tokens[role] = admin.tokens.create(role[:3]).token
    digest = admin.artifacts.upload(b"model").digest
    admin.models.register("m", artifact=digest, flavor="sklearn")
    admin.models.register("m", artifact=digest, flavor="sklearn")
    admin.models.approve("m", 1)
    with LiveServer(runtime) as server:
        yield server, runtime, tokens
    runtime.close()


def test_a_scientist_may_not_deploy_or_move_production_over_http(
    auth_server: tuple[LiveServer, Runtime, dict[str, str]],
) -> None:
    server, runtime, tokens = auth_server
    api = f"{server.url}/api/v1"

    def as_role(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}

    # A shadow variant of an unapproved version is a deployment too.
    shadow = {
        "name": "ep",
        "variants": [
            {"name": "v1", "model": "m", "version": "1"},
            {"name": "v2", "model": "m", "version": "2", "shadow": True},
        ],
    }
    refused = httpx.post(f"{api}/endpoints", json=shadow, headers=as_role("scientist"))
    assert refused.status_code == 403, refused.text
    assert "endpoints.deploy" in refused.json()["message"]
    moved = httpx.put(
        f"{api}/models/m/aliases/production", json={"version": 1}, headers=as_role("scientist")
    )
    assert moved.status_code == 403 and "models.deploy" in moved.json()["message"]
    # Other aliases stay a scientist's.
    staging = httpx.put(
        f"{api}/models/m/aliases/staging", json={"version": 2}, headers=as_role("scientist")
    )
    assert staging.status_code == 200, staging.text
    # Through MLflow's registry API too.
    mlflow = httpx.post(
        f"{server.url}/api/2.0/mlflow/registered-models/alias",
        json={"name": "m", "alias": "production", "version": "1"},
        headers=as_role("scientist"),
    )
    assert mlflow.status_code == 403 and mlflow.json()["error_code"] == "PERMISSION_DENIED"
    admin = Client(EmbeddedTransport(runtime, local_principal()))
    assert "production" not in admin.models.get("m").aliases
    assert admin.endpoints.list().endpoints == []
    refusals = [(e.operation, e.result) for e in admin.audit.list(actor="sci").events]
    assert ("endpoints.create_endpoint", "permission_denied") in refusals
    assert ("models.set_alias", "permission_denied") in refusals
    # An engineer may do both.
    ok = httpx.put(
        f"{api}/models/m/aliases/production", json={"version": 1}, headers=as_role("engineer")
    )
    assert ok.status_code == 200, ok.text
    gone = httpx.request(
        "DELETE", f"{api}/models/m/aliases/production", headers=as_role("scientist")
    )
    assert gone.status_code == 403
    assert admin.models.get("m").aliases["production"] == 1
