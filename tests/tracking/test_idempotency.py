"""Idempotency keys on batch writes (metrics/params batches, dataset registrations): a
repeat runs once, on SQLite and PostgreSQL; the SDK resends safely after a lost answer."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import update

import modelyard as my
from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport, RemoteTransport
from modelyard.core.idempotency_store import IdempotencyRow
from modelyard.core.operations import Principal
from modelyard.data.schemas import DatasetFile, RegisterVersion
from modelyard.errors import ServiceUnavailable
from modelyard.runtime import Runtime
from modelyard.security.roles import ROLES
from modelyard.security.service import local_principal
from modelyard.tracking.schemas import LogBatch
from testkit import LiveServer, make_settings

KEY = "k" * 16 + "-retry-1"


def _batch(run_id: str, value: float = 1.0, key: str | None = KEY) -> LogBatch:
    return LogBatch(
        run_id=run_id,
        idempotency_key=key,
        params=[{"key": "lr", "value": "0.1"}],
        metrics=[{"key": "loss", "value": value, "step": s} for s in range(5)],
    )


def _points(sdk: Client, run_id: str) -> int:
    return sdk.tracking.metric_history(run_id, "loss").total


def test_a_repeated_batch_is_written_once(runtime: Runtime) -> None:
    transport = EmbeddedTransport(runtime, local_principal())
    sdk = Client(transport)
    run = sdk.tracking.create_run("e")
    first = transport.call("tracking.log_batch", _batch(run.id))
    again = transport.call("tracking.log_batch", _batch(run.id))
    assert again == first
    assert _points(sdk, run.id) == 5
    assert sdk.tracking.get_run(run.id).params == {"lr": "0.1"}
    results = [e.result for e in sdk.audit.list(operation="tracking.log_batch").events]
    assert results == ["replayed", "ok"]
    # Without a key, a repeat is a second write (as before).
    transport.call("tracking.log_batch", _batch(run.id, key=None))
    transport.call("tracking.log_batch", _batch(run.id, key=None))
    assert _points(sdk, run.id) == 15


def test_a_different_request_with_a_used_key_is_refused(runtime: Runtime) -> None:
    transport = EmbeddedTransport(runtime, local_principal())
    sdk = Client(transport)
    run = sdk.tracking.create_run("e")
    transport.call("tracking.log_batch", _batch(run.id))
    with pytest.raises(my.Conflict, match="already used for another input") as refused:
        transport.call("tracking.log_batch", _batch(run.id, value=2.0))
    assert refused.value.details["idempotency_key"] == KEY
    other = sdk.tracking.create_run("e")
    with pytest.raises(my.Conflict, match="another input"):  # another run is another input
        transport.call("tracking.log_batch", _batch(other.id))
    assert _points(sdk, run.id) == 5 and _points(sdk, other.id) == 0
    events = sdk.audit.list(operation="tracking.log_batch").events
    assert [e.result for e in events] == ["conflict", "conflict", "ok"]


def test_keys_belong_to_their_user_and_expire(runtime: Runtime) -> None:
    admin = EmbeddedTransport(runtime, local_principal())
    sdk = Client(admin)
    run = sdk.tracking.create_run("e")
    admin.call("tracking.log_batch", _batch(run.id))
    # Another user's identical key is their own: it writes.
    sam = Principal(user="sam", role="scientist", permissions=ROLES["scientist"])
    EmbeddedTransport(runtime, sam).call("tracking.log_batch", _batch(run.id))
    assert _points(sdk, run.id) == 10
    # Past the window the key is forgotten: the same request writes again.
    with runtime.db.transaction() as session:
        session.execute(
            update(IdempotencyRow).values(
                created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
            )
        )
    admin.call("tracking.log_batch", _batch(run.id))
    assert _points(sdk, run.id) == 15
    with runtime.db.transaction(write=False) as session:
        rows = session.query(IdempotencyRow).all()
    assert [(r.actor, r.key) for r in rows] == [("local", KEY)]  # the expired ones are gone


def test_concurrent_calls_with_one_key_write_once(runtime: Runtime) -> None:
    transport = EmbeddedTransport(runtime, local_principal())
    sdk = Client(transport)
    run = sdk.tracking.create_run("e")
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def call() -> None:
        barrier.wait()
        try:
            results.append(transport.call("tracking.log_batch", _batch(run.id)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert _points(sdk, run.id) == 5


def test_a_repeated_dataset_registration_makes_one_version(runtime: Runtime) -> None:
    transport = EmbeddedTransport(runtime, local_principal())
    sdk = Client(transport)
    digest = sdk.artifacts.upload(b"x,y\n1,2\n").digest
    req = RegisterVersion(
        name="d", files=[DatasetFile(path="d.csv", digest=digest)], idempotency_key=KEY
    )
    first = transport.call("datasets.register_version", req)
    assert transport.call("datasets.register_version", req) == first
    assert sdk.datasets.get("d").latest_version == 1


class DropFirstAnswer(httpx.BaseTransport):
    """Forwards to the server; the first answer to a path ending in ``suffix`` is lost
    after the server sent it (so after it committed), as when a connection breaks."""

    def __init__(self, suffix: str, *, status: int | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.suffix = suffix
        self.status = status
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        first = request.url.path.endswith(self.suffix) and not any(
            p.endswith(self.suffix) for p in self.sent
        )
        self.sent.append(request.url.path)
        if first and self.status is not None:  # a proxy answering for a server it lost
            return httpx.Response(self.status, text="bad gateway", request=request)
        response = self.inner.handle_request(request)
        if first:
            response.read()
            response.close()
            raise httpx.ReadError("connection reset before the answer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    runtime = Runtime(make_settings(tmp_path))
    with LiveServer(runtime) as live:
        yield live
    runtime.close()


@pytest.fixture
def remote(server: LiveServer) -> Iterator[Callable[[httpx.BaseTransport], Client]]:
    """Remote clients of ``server`` sending through a hook; closed after the test."""
    made: list[Client] = []

    def make(hook: httpx.BaseTransport) -> Client:
        made.append(Client(RemoteTransport(server.url, transport=hook, backoff_s=0)))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_sdk_retries_a_batch_whose_answer_was_lost_without_duplicates(
    remote: Callable[[httpx.BaseTransport], Client],
) -> None:
    hook = DropFirstAnswer("/batch")
    sdk = remote(hook)
    run = sdk.tracking.create_run("e")
    logged = sdk.tracking.log_batch(
        run.id,
        metrics=[{"key": "loss", "value": 0.5, "step": s} for s in range(7)],
        params={"lr": 0.1},
    )
    assert logged.metrics == 7
    assert [p for p in hook.sent if p.endswith("/batch")] == [f"/api/v1/runs/{run.id}/batch"] * 2
    assert _points(sdk, run.id) == 7
    # The run logger's buffered points go through the same path.
    hook2 = DropFirstAnswer("/batch")
    with remote(hook2).tracking.start_run("e") as live_run:
        live_run.log_metric("acc", 0.9, step=1)
        run_id = live_run.id
    assert sdk.tracking.metric_history(run_id, "acc").total == 1
    assert len([p for p in hook2.sent if p.endswith("/batch")]) == 2


def test_sdk_retries_a_dataset_registration_after_a_502(
    remote: Callable[[httpx.BaseTransport], Client],
) -> None:
    for hook in (DropFirstAnswer("/datasets/d/versions"), DropFirstAnswer("/versions", status=502)):
        sdk = remote(hook)
        version = sdk.datasets.register("d", pa.table({"x": [1, 2]}), profile=False)
        assert len([p for p in hook.sent if p.endswith("/versions")]) == 2
        assert sdk.datasets.get("d").latest_version == version.version
    assert version.version == 2  # two registrations, one version each


def test_sdk_does_not_resend_a_write_without_a_key(
    remote: Callable[[httpx.BaseTransport], Client],
) -> None:
    hook = DropFirstAnswer("/experiments")
    sdk = remote(hook)
    with pytest.raises(ServiceUnavailable, match="connection reset"):
        sdk.tracking.create_experiment("once")
    assert hook.sent == ["/api/v1/experiments"]
    assert sdk.tracking.get_experiment("once").name == "once"  # it was created, once


class FailFirst(httpx.BaseTransport):
    """Raises ``error`` for the first request to a path ending in ``suffix`` without
    sending it; forwards everything else."""

    def __init__(self, suffix: str, error: type[httpx.TransportError]) -> None:
        self.inner = httpx.HTTPTransport()
        self.suffix, self.error = suffix, error
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        first = request.url.path.endswith(self.suffix) and not any(
            p.endswith(self.suffix) for p in self.sent
        )
        self.sent.append(request.url.path)
        if first:
            raise self.error("simulated", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_sdk_resends_any_write_that_never_left_but_not_a_timed_out_one(
    remote: Callable[[httpx.BaseTransport], Client],
) -> None:
    # The connection could not be opened: nothing reached the server, so even a write
    # without a key is sent again.
    hook = FailFirst("/experiments", httpx.ConnectError)
    assert remote(hook).tracking.create_experiment("e").name == "e"
    assert hook.sent.count("/api/v1/experiments") == 2
    # A keyed batch that timed out waiting for its answer is not: the caller hears at once.
    timeout = FailFirst("/batch", httpx.ReadTimeout)
    sdk = remote(timeout)
    run = sdk.tracking.create_run("e")
    with pytest.raises(ServiceUnavailable):
        sdk.tracking.log_batch(run.id, metrics=[{"key": "loss", "value": 1.0}])
    assert len([p for p in timeout.sent if p.endswith("/batch")]) == 1
