"""Registry rules that need the store itself, on SQLite and PostgreSQL (``runtime``):
gap-free numbering under concurrency, permissions and audit, events; and lineage."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.client.estimators import Estimator
from modelyard.client.sdk import Client, connect
from modelyard.client.transport import EmbeddedTransport
from modelyard.core.events import read_events
from modelyard.errors import PermissionDenied
from modelyard.lineage.schemas import GetLineage
from modelyard.registry.store import HistoryRow, ModelGroupRow, ModelVersionRow
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from testkit import LiveServer, make_settings


def admin(runtime: Runtime) -> Client:
    return Client(EmbeddedTransport(runtime, local_principal()))


def user(runtime: Runtime, name: str, role: str) -> tuple[Client, str]:
    boss = admin(runtime)
    boss.users.create(name, role)  # type: ignore[arg-type]
    token = boss.tokens.create(name).token
    return Client(EmbeddedTransport(runtime, runtime.principal(token))), token


@pytest.mark.parametrize("threads", [12])
def test_concurrent_registration_numbers_versions_without_gaps(
    runtime: Runtime, threads: int
) -> None:
    digest = admin(runtime).artifacts.upload(b"m").digest
    per_thread = 3
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    got: list[int] = []
    lock = threading.Lock()

    def register() -> None:
        c = admin(runtime)
        try:
            barrier.wait()
            for _ in range(per_thread):
                # The group does not exist yet: the first registrations also race to create it.
                v = c.models.register("race", artifact=digest, flavor="python")
                with lock:
                    got.append(v.version)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=register) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    n = threads * per_thread
    assert sorted(got) == list(range(1, n + 1))
    with runtime.db.transaction(write=False) as session:
        groups = session.query(ModelGroupRow).all()
        assert [(g.name, g.version_count) for g in groups] == [("race", n)]
        stored = sorted(v for (v,) in session.query(ModelVersionRow.version).all())
        assert stored == list(range(1, n + 1))
        assert session.query(HistoryRow).filter(HistoryRow.kind == "registered").count() == n


def test_concurrent_alias_moves_leave_one_consistent_history(runtime: Runtime) -> None:
    boss = admin(runtime)
    digest = boss.artifacts.upload(b"m").digest
    for _ in range(4):
        boss.models.register("m", artifact=digest, flavor="python")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def move(i: int) -> None:
        try:
            barrier.wait()
            admin(runtime).models.set_alias("m", "staging", 1 + i % 4)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=move, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    moves = [e for e in boss.models.history("m").entries if e.kind == "alias"]
    # Each recorded move starts where the previous one ended, and the last is the alias now.
    assert moves[0].old is None
    for before, after in itertools.pairwise(moves):
        assert after.old == before.new
    assert int(moves[-1].new or 0) == boss.models.get("m").aliases["staging"]


def test_history_rows_cannot_be_updated_or_deleted(runtime: Runtime) -> None:
    boss = admin(runtime)
    boss.models.register("m", artifact=boss.artifacts.upload(b"m").digest, flavor="python")
    for change in ("update", "delete"):
        with (
            pytest.raises(RuntimeError, match="append-only"),
            runtime.db.transaction() as session,
        ):
            row = session.query(HistoryRow).one()
            if change == "update":
                row.reason = "rewritten"
            else:
                session.delete(row)
            session.flush()
    assert [(e.kind, e.reason) for e in boss.models.history("m").entries] == [("registered", "")]


def test_a_scientist_may_register_but_not_approve(runtime: Runtime) -> None:
    boss = admin(runtime)
    scientist, _ = user(runtime, "sam", "scientist")
    engineer, _ = user(runtime, "eve", "engineer")
    viewer, _ = user(runtime, "vera", "viewer")
    digest = scientist.artifacts.upload(b"m").digest
    v = scientist.models.register("m", artifact=digest, flavor="sklearn")
    assert v.created_by == "sam"
    with pytest.raises(PermissionDenied, match=r"models\.approve"):
        scientist.models.approve("m", 1, reason="mine is great")
    with pytest.raises(PermissionDenied):
        scientist.models.reject("m", 1, reason="x")
    with pytest.raises(PermissionDenied, match=r"models\.write"):
        viewer.models.register("m", artifact=digest, flavor="sklearn")
    with pytest.raises(PermissionDenied):
        viewer.models.set_alias("m", "staging", 1)
    assert viewer.models.version("m", 1).status == "PendingManualApproval"  # reads allowed
    assert [e.kind for e in boss.models.history("m").entries] == ["registered"]
    refusals = boss.audit.list(actor="sam").events
    assert [(e.operation, e.result) for e in refusals][:2] == [
        ("models.reject_version", "permission_denied"),
        ("models.approve_version", "permission_denied"),
    ]
    assert engineer.models.approve("m", 1, reason="reviewed").status_by == "eve"
    approved = boss.audit.list(operation="models.approve_version").events[0]
    assert (approved.actor, approved.result, approved.target) == ("eve", "ok", "model_version:m:1")


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[LiveServer, Runtime]]:
    runtime = Runtime(make_settings(tmp_path, auth=True))
    with LiveServer(runtime) as server:
        yield server, runtime
    runtime.close()


def test_approval_over_http_is_403_for_a_scientist(
    auth_server: tuple[LiveServer, Runtime],
) -> None:
    server, runtime = auth_server
    _, sam = user(runtime, "sam", "scientist")
    _, eve = user(runtime, "eve", "engineer")
    digest = admin(runtime).artifacts.upload(b"m").digest
    admin(runtime).models.register("m", artifact=digest, flavor="sklearn")
    url = f"{server.url}/api/v1/models/m/versions/1/approve"
    refused = httpx.post(url, json={"reason": "x"}, headers={"Authorization": f"Bearer {sam}"})
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    assert admin(runtime).models.version("m", 1).status == "PendingManualApproval"
    ok = httpx.post(url, json={"reason": "x"}, headers={"Authorization": f"Bearer {eve}"})
    assert ok.status_code == 200 and ok.json()["status"] == "Approved"
    bad = httpx.post(
        f"{server.url}/api/v1/models/m/versions/1/reject",
        json={},
        headers={"Authorization": f"Bearer {eve}"},
    )
    assert bad.status_code == 400 and "reason" in bad.text


def _model_events(runtime: Runtime) -> list[tuple[str, str, dict[str, object]]]:
    with runtime.db.transaction(write=False) as session:
        return [
            (e.type, e.actor, dict(e.payload))
            for e in read_events(session, limit=1000)
            if e.type.startswith(("model_version.", "model_alias."))
        ]


def test_each_change_emits_one_event(runtime: Runtime) -> None:
    boss = admin(runtime)
    digest = boss.artifacts.upload(b"m").digest
    v1 = boss.models.register("m", artifact=digest, flavor="onnx")
    boss.models.approve("m", 1, reason="ok")
    boss.models.approve("m", 1)  # no change: no event
    boss.models.set_alias("m", "production", 1)
    with pytest.raises(PermissionDenied):
        user(runtime, "sam", "scientist")[0].models.reject("m", 1, reason="refused")
    boss.models.delete_alias("m", "production")
    boss.models.reject("m", 1, reason="retired")
    events = _model_events(runtime)
    assert [(t, a) for t, a, _ in events] == [
        ("model_version.registered", "local"),
        ("model_version.status_changed", "local"),
        ("model_alias.moved", "local"),
        ("model_alias.deleted", "local"),
        ("model_version.status_changed", "local"),
    ]
    registered, approved, moved, deleted, rejected = (p for _, _, p in events)
    assert registered == {
        "name": "m",
        "version": 1,
        "version_id": v1.id,
        "artifact_digest": digest,
        "flavor": "onnx",
        "status": "PendingManualApproval",
        "actor": "local",
    }
    assert (approved["old"], approved["new"], approved["reason"]) == (
        "PendingManualApproval",
        "Approved",
        "ok",
    )
    assert (moved["alias"], moved["old"], moved["new"], moved["version"]) == (
        "production",
        None,
        1,
        1,
    )
    assert (deleted["alias"], deleted["old"], deleted["new"]) == ("production", 1, None)
    assert (rejected["old"], rejected["new"], rejected["reason"]) == (
        "Approved",
        "Rejected",
        "retired",
    )


def test_lineage_links_artifact_run_and_job(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path))
    try:
        boss = admin(runtime)
        run = boss.tracking.create_run("churn", name="xgb-1")
        digest = boss.artifacts.upload(b"m").digest
        v = boss.models.register("churn", artifact=digest, flavor="xgboost", run_id=run.id)
        with LiveServer(runtime) as server:
            graph = httpx.get(
                f"{server.url}/api/v1/lineage/model_version/{v.id}",
                params={"direction": "upstream"},
            ).json()
        assert graph["root"] == f"model_version:{v.id}"
        edges = {(e["source"], e["relation"], e["target"]) for e in graph["edges"]}
        assert (f"artifact:{digest}", "packages", f"model_version:{v.id}") in edges
        assert (f"run:{run.id}", "produced", f"model_version:{v.id}") in edges
        labels = {n["id"]: n["label"] for n in graph["nodes"]}
        assert labels[v.id] == "churn v1" and labels[run.id] == "run xgb-1"
        assert labels[digest] == f"sha256:{digest[:12]}"
    finally:
        runtime.close()


def test_registering_a_training_jobs_model(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(
        "import os\n"
        "with open(os.path.join(os.environ['SM_MODEL_DIR'], 'weights.txt'), 'w') as fh:\n"
        "    fh.write('w=1')\n"
    )
    with connect(home=tmp_path / "home") as client:
        job = Estimator("train.py", code, client=client).fit(logs=False)
        assert job.state == "Completed" and job.model is not None
        v = client.models.register("from-job", job_id=job.id, flavor="python")
        assert v.artifact_digest == job.model.digest and v.source_job_id == job.id
        out = client.models.download("from-job", 1, tmp_path / "out")
        assert (out / "weights.txt").read_text() == "w=1"
        graph = client.transport.call(
            "lineage.get_lineage",
            GetLineage(node_type="model_version", node_id=v.id, direction="upstream"),
        )
        edges = {(e.source, e.relation) for e in graph.edges}
        assert (f"job:{job.id}", "produced") in edges
        assert (f"artifact:{job.model.digest}", "packages") in edges
