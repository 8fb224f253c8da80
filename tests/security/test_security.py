"""Users, tokens, roles and the audit trail, on SQLite and PostgreSQL (``runtime`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

import modelyard as my
from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport, RemoteTransport
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from modelyard.security.store import TokenRow
from testkit import LiveServer, make_settings


def admin_client(runtime: Runtime) -> Client:
    return Client(EmbeddedTransport(runtime, local_principal()))


def as_token(runtime: Runtime, token: str) -> Client:
    return Client(EmbeddedTransport(runtime, runtime.principal(token)))


def test_token_is_shown_once_and_stored_hashed(runtime: Runtime) -> None:
    admin = admin_client(runtime)
    admin.users.create("alice", "scientist")
    created = admin.tokens.create("alice", "laptop")
    assert created.token.startswith("myt_")
    with runtime.db.transaction(write=False) as session:
        row = session.get(TokenRow, created.id)
        assert row is not None
        assert created.token.split("_", 2)[2] not in (row.secret_hash, row.name)
    listed = admin.tokens.list("alice").tokens
    assert [t.id for t in listed] == [created.id]
    assert not hasattr(listed[0], "token")
    assert as_token(runtime, created.token).users.me().user == "alice"


def test_bad_revoked_and_expired_tokens_are_refused(runtime: Runtime) -> None:
    admin = admin_client(runtime)
    admin.users.create("bob", "viewer")
    token = admin.tokens.create("bob").token
    for bad in ["nonsense", "myt_", token[:-2] + "xx", "myt_tok-00000000000000000000000000_abc"]:
        with pytest.raises(my.Unauthenticated):
            runtime.principal(bad)
    admin.tokens.revoke(admin.tokens.list("bob").tokens[0].id)
    with pytest.raises(my.Unauthenticated, match="revoked"):
        runtime.principal(token)


def test_roles_are_enforced_at_the_operation_layer(runtime: Runtime) -> None:
    admin = admin_client(runtime)
    admin.datasets.register("shared", pa.table({"x": [1, 2]}), profile=False)
    for name, role in [("vera", "viewer"), ("sam", "scientist"), ("eve", "engineer")]:
        admin.users.create(name, role)  # type: ignore[arg-type]
    viewer = as_token(runtime, admin.tokens.create("vera").token)
    scientist = as_token(runtime, admin.tokens.create("sam").token)

    assert viewer.datasets.get("shared").latest_version == 1  # reading is allowed
    with pytest.raises(my.PermissionDenied, match="may not call"):
        viewer.datasets.register("mine", pa.table({"x": [1]}))
    with pytest.raises(my.PermissionDenied):
        scientist.users.create("mallory", "admin")
    with pytest.raises(my.PermissionDenied):
        scientist.audit.list()
    with pytest.raises(my.PermissionDenied, match="own tokens"):
        scientist.tokens.create("vera")
    assert scientist.tokens.create("sam", "second").user == "sam"  # own tokens are fine
    with pytest.raises(my.NotFound):
        viewer.datasets.get("mine")  # the refused registration changed nothing


def test_every_mutation_is_audited_including_failures(runtime: Runtime) -> None:
    admin = admin_client(runtime)
    admin.users.create("carol", "viewer")
    with pytest.raises(my.AlreadyExists):
        admin.users.create("carol", "viewer")
    viewer = as_token(runtime, admin.tokens.create("carol").token)
    with pytest.raises(my.PermissionDenied):
        viewer.users.create("dave")
    events = admin.audit.list().events
    summary = [(e.actor, e.operation, e.result) for e in events]
    assert summary[:4] == [
        ("carol", "security.create_user", "permission_denied"),
        ("local", "security.create_token", "ok"),
        ("local", "security.create_user", "already_exists"),
        ("local", "security.create_user", "ok"),
    ]
    assert all(e.origin == "embedded" for e in events)
    assert events[3].target == "user:carol"
    # Reads are not audited.
    admin.users.list()
    assert len(admin.audit.list().events) == len(events)
    # Filters.
    assert {e.actor for e in admin.audit.list(actor="carol").events} == {"carol"}
    assert len(admin.audit.list(operation="security.create_token").events) == 1


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    runtime = Runtime(make_settings(tmp_path, auth=True))
    admin = admin_client(runtime)
    admin.users.create("root", "admin")
    token = admin.tokens.create("root").token
    with LiveServer(runtime) as server:
        yield server, token
    runtime.close()


def test_http_requires_a_token_when_auth_is_on(auth_server: tuple[LiveServer, str]) -> None:
    server, token = auth_server
    with (
        Client(RemoteTransport(server.url)) as anonymous,
        pytest.raises(my.Unauthenticated, match="requires an API token"),
    ):
        anonymous.datasets.list()
    with (
        pytest.raises(my.Unauthenticated),
        Client(RemoteTransport(server.url, "myt_tok-x_y")) as bad,
    ):
        bad.datasets.list()
    with Client(RemoteTransport(server.url, token)) as root:
        assert root.users.me().user == "root"
        root.users.create("http-user", "viewer")
        event = root.audit.list(limit=1).events[0]
    assert (event.actor, event.operation, event.origin) == (
        "root",
        "security.create_user",
        "127.0.0.1",
    )
    # Health checks stay open for load balancers.
    assert httpx.get(server.url + "/healthz").status_code == 200
