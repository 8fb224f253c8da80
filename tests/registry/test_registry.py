"""The model registry through the SDK, on both transports (``client`` fixture)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from modelyard.client.sdk import Client
from modelyard.compute.archive import write_tar_gz
from modelyard.errors import AlreadyExists, Conflict, InvalidInput, NotFound


def _upload(client: Client, content: bytes = b"model bytes") -> str:
    return client.artifacts.upload(content).digest


def _model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.json").write_text('{"trees": []}')
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)))
    return folder


def test_register_describe_and_download(client: Client, tmp_path: Path) -> None:
    folder = _model_folder(tmp_path)
    card = {"intended_use": "churn scoring", "evaluation": "AUC 0.91", "limitations": "EU only"}
    signature = {
        "inputs": [
            {"name": "age", "type": "int64"},
            {"name": "x", "type": "float32", "shape": [-1, 3]},
        ],
        "outputs": [{"name": "p", "type": "float64"}],
    }
    v1 = client.models.register(
        "churn",
        path=folder,
        flavor="sklearn",
        flavor_metadata={"format": "skops", "sklearn": "1.5"},
        signature=signature,
        metrics={"auc": 0.91, "logloss": 0.2},
        card=card,
        description="first",
        tags={"team": "risk"},
    )
    assert (v1.name, v1.version, v1.status) == ("churn", 1, "PendingManualApproval")
    assert v1.artifact_filename == "" and v1.created_by == "local"
    assert v1.card.intended_use == "churn scoring" and v1.card.limitations == "EU only"
    assert [s.name for s in v1.signature.inputs] == ["age", "x"]
    assert v1.signature.inputs[1].shape == [-1, 3]
    assert v1.metrics == {"auc": 0.91, "logloss": 0.2}
    assert v1.flavor_metadata == {"format": "skops", "sklearn": "1.5"}
    # The folder was packed deterministically: the same archive has the same digest.
    write_tar_gz(folder, tmp_path / "again.tar.gz", excludes={"__pycache__"})
    assert client.artifacts.upload(tmp_path / "again.tar.gz").digest == v1.artifact_digest

    single = tmp_path / "model.onnx"
    single.write_bytes(b"onnx-bytes")
    v2 = client.models.register("churn", path=single, flavor="onnx")
    assert v2.version == 2 and v2.artifact_filename == "model.onnx"
    assert v2.artifact_size == len(b"onnx-bytes")
    v3 = client.models.register("churn", artifact=_upload(client), flavor="builtin:xgboost")
    assert v3.version == 3

    model = client.models.get("churn")
    assert model.latest_version == 3 and model.aliases == {}
    assert client.models.version("churn", 2).id == v2.id
    assert client.models.version("churn", "2").id == v2.id
    assert client.models.version("churn", "latest").id == v3.id

    out = client.models.download("churn", 1, tmp_path / "out1")
    assert out == tmp_path / "out1"
    assert (out / "model.json").read_text() == '{"trees": []}'
    assert (out / "sub" / "weights.bin").read_bytes() == bytes(range(256))
    path = client.models.download("churn", 2, tmp_path / "out2")
    assert path == tmp_path / "out2" / "model.onnx" and path.read_bytes() == b"onnx-bytes"
    assert client.models.download("churn", 3, tmp_path / "out3").name == "model"


def test_lists_filter_and_page(client: Client) -> None:
    digest = _upload(client)
    for name in ["b-model", "a-model", "a_other", "c"]:
        client.models.register(name, artifact=digest, flavor="python")
    client.models.create("empty", description="nothing yet", tags={"k": "v"})
    assert [m.name for m in client.models.list().models] == [
        "a-model",
        "a_other",
        "b-model",
        "c",
        "empty",
    ]
    # "_" in a prefix is a literal underscore, not a LIKE wildcard.
    assert [m.name for m in client.models.list("a_").models] == ["a_other"]
    page = client.models.list(limit=2, offset=1)
    assert page.total == 5 and [m.name for m in page.models] == ["a_other", "b-model"]
    empty = client.models.get("empty")
    assert (empty.latest_version, empty.description, empty.tags) == (0, "nothing yet", {"k": "v"})
    with pytest.raises(AlreadyExists):
        client.models.create("empty")

    for _ in range(4):
        client.models.register("c", artifact=digest, flavor="python")
    client.models.approve("c", 2)
    client.models.reject("c", 4, reason="worse")
    versions = client.models.versions("c")
    assert versions.total == 5 and [v.version for v in versions.versions] == [5, 4, 3, 2, 1]
    assert [v.version for v in client.models.versions("c", status="Approved").versions] == [2]
    assert [v.version for v in client.models.versions("c", limit=2, offset=2).versions] == [3, 2]
    pending = client.models.versions("c", status="PendingManualApproval")
    assert pending.total == 3


def test_bad_registrations_change_nothing(client: Client, tmp_path: Path) -> None:
    digest = _upload(client)
    client.models.register("m", artifact=digest, flavor="sklearn")
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"artifact": "f" * 64}, InvalidInput, "never uploaded"),
        ({"artifact": "F" * 64}, InvalidInput, "artifact_digest"),
        ({"artifact": digest, "flavor": "Not A Flavor"}, InvalidInput, "flavor"),
        ({"artifact": digest, "metrics": {"auc": math.nan}}, InvalidInput, "metrics"),
        ({"artifact": digest, "metrics": {"bad key": 1.0}}, InvalidInput, "metrics"),
        ({"artifact": digest, "run_id": "run-nope"}, InvalidInput, "source run 'run-nope'"),
        ({"artifact": digest, "job_id": "job-" + "0" * 26}, InvalidInput, "source job"),
        ({"artifact": digest, "card": {"unknown_section": "x"}}, InvalidInput, "card"),
        (
            {"artifact": digest, "signature": {"inputs": [{"name": "x", "type": "Float 32"}]}},
            InvalidInput,
            "signature",
        ),
        ({"artifact": digest, "flavor_metadata": {"x": "a\x00b"}}, InvalidInput, "NUL"),
        ({"artifact": digest, "path": tmp_path}, InvalidInput, "not both"),
        ({"path": tmp_path / "missing"}, InvalidInput, "neither a file nor a folder"),
        ({}, InvalidInput, "give artifact"),
    ]
    for fields, error, message in cases:
        kwargs: dict[str, object] = {"flavor": "sklearn", **fields}
        with pytest.raises(error, match=message):
            client.models.register("m", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(error):
            client.models.register("new-model", **kwargs)  # type: ignore[arg-type]
    assert client.models.get("m").latest_version == 1
    assert [m.name for m in client.models.list().models] == ["m"]
    assert client.models.history("m").total == 1
    with pytest.raises(InvalidInput, match="name"):
        client.models.register("bad name!", artifact=digest, flavor="sklearn")


def test_missing_things_are_not_found(client: Client) -> None:
    client.models.register("m", artifact=_upload(client), flavor="sklearn")
    with pytest.raises(NotFound, match="model 'nope' does not exist"):
        client.models.get("nope")
    with pytest.raises(NotFound, match="no version 7"):
        client.models.version("m", 7)
    with pytest.raises(NotFound, match="no alias 'production'"):
        client.models.version("m", "production")
    with pytest.raises(NotFound):
        client.models.approve("m", 2)
    with pytest.raises(NotFound):
        client.models.versions("nope")
    with pytest.raises(NotFound, match="alias 'staging'"):
        client.models.delete_alias("m", "staging")
    with pytest.raises(InvalidInput):
        client.models.version("m", "Not-A-Ref")
    with pytest.raises(NotFound):
        client.models.history("nope")
    empty = client.models.create("empty")
    with pytest.raises(NotFound, match="no versions yet"):
        client.models.version(empty.name, "latest")


def test_approval_transitions(client: Client) -> None:
    digest = _upload(client)
    for _ in range(3):
        client.models.register("m", artifact=digest, flavor="sklearn")
    approved = client.models.approve("m", 1, reason="beats baseline")
    assert (approved.status, approved.status_by, approved.status_reason) == (
        "Approved",
        "local",
        "beats baseline",
    )
    assert approved.status_at is not None
    # Repeating the current status is a no-op that keeps the first decision.
    again = client.models.approve("m", 1, reason="second time")
    assert again.status_reason == "beats baseline" and again.status_at == approved.status_at
    # A reason is required to reject.
    for reason in ["", "   "]:
        with pytest.raises(InvalidInput, match="reason"):
            client.models.reject("m", 2, reason=reason)
    assert client.models.version("m", 2).status == "PendingManualApproval"
    rejected = client.models.reject("m", 2, reason="leaks labels")
    assert (rejected.status, rejected.status_reason) == ("Rejected", "leaks labels")
    # Revoking an approval, and approving again after review, are both allowed.
    assert client.models.reject("m", 1, reason="found a bug").status == "Rejected"
    assert client.models.approve("m", 1, reason="bug fixed upstream").status == "Approved"
    assert client.models.approve("m", 2, reason="false alarm").status == "Approved"
    assert client.models.version("m", 3).status == "PendingManualApproval"


def test_aliases_move_atomically_and_production_needs_approval(client: Client) -> None:
    digest = _upload(client)
    for _ in range(3):
        client.models.register("m", artifact=digest, flavor="sklearn")
    # production may only point at an Approved version; the refusal changes nothing.
    with pytest.raises(Conflict, match="approve it first"):
        client.models.set_alias("m", "production", 1)
    assert client.models.get("m").aliases == {}
    client.models.reject("m", 2, reason="no")
    with pytest.raises(Conflict, match="Rejected"):
        client.models.set_alias("m", "production", 2)
    # Other aliases may point at any version.
    staging = client.models.set_alias("m", "staging", 2)
    assert (staging.version, staging.previous_version) == (2, None)
    client.models.approve("m", 1)
    client.models.approve("m", 3)
    assert client.models.set_alias("m", "production", 1).previous_version is None
    moved = client.models.set_alias("m", "production", 3)
    assert (moved.version, moved.previous_version) == (3, 1)
    same = client.models.set_alias("m", "production", 3)  # no-op
    assert (same.version, same.previous_version) == (3, 3)
    assert client.models.get("m").aliases == {"production": 3, "staging": 2}
    assert client.models.version("m", "production").version == 3
    assert client.models.version("m", 3).aliases == ["production"]
    # An approval that production relies on cannot be revoked until the alias moves.
    with pytest.raises(Conflict, match="move or delete the alias"):
        client.models.reject("m", 3, reason="regression")
    assert client.models.version("m", 3).status == "Approved"
    with pytest.raises(InvalidInput, match="highest version"):
        client.models.set_alias("m", "latest", 1)
    with pytest.raises(InvalidInput):
        client.models.set_alias("m", "Production", 1)
    with pytest.raises(NotFound):
        client.models.set_alias("m", "canary", 9)
    deleted = client.models.delete_alias("m", "production")
    assert deleted.version == 3
    assert client.models.get("m").aliases == {"staging": 2}
    assert client.models.reject("m", 3, reason="regression").status == "Rejected"
    with pytest.raises(NotFound):
        client.models.version("m", "production")


def test_history_records_every_change_once_in_order(client: Client) -> None:
    digest = _upload(client)
    client.models.register("m", artifact=digest, flavor="sklearn")
    client.models.register("m", artifact=digest, flavor="sklearn")
    client.models.approve("m", 1, reason="good")
    client.models.approve("m", 1, reason="no-op")  # no change, no entry
    client.models.set_alias("m", "production", 1)
    client.models.set_alias("m", "production", 1)  # no change, no entry
    with pytest.raises(Conflict):
        client.models.set_alias("m", "production", 2)  # refused, no entry
    client.models.set_alias("m", "staging", 2)
    client.models.reject("m", 2, reason="drift")
    client.models.set_alias("m", "staging", 1)
    client.models.delete_alias("m", "staging")
    before = client.models.history("m").entries

    rows = [(e.kind, e.version, e.alias, e.old, e.new, e.actor, e.reason) for e in before]
    assert rows == [
        ("registered", 1, None, None, "PendingManualApproval", "local", ""),
        ("registered", 2, None, None, "PendingManualApproval", "local", ""),
        ("status", 1, None, "PendingManualApproval", "Approved", "local", "good"),
        ("alias", 1, "production", None, "1", "local", ""),
        ("alias", 2, "staging", None, "2", "local", ""),
        ("status", 2, None, "PendingManualApproval", "Rejected", "local", "drift"),
        ("alias", 1, "staging", "2", "1", "local", ""),
        ("alias", 1, "staging", "1", None, "local", ""),
    ]
    assert [e.seq for e in before] == sorted(e.seq for e in before)
    assert all(a.time <= b.time for a, b in itertools.pairwise(before))
    # Append-only: later changes never rewrite earlier entries.
    client.models.approve("m", 2, reason="drift was a data bug")
    after = client.models.history("m").entries
    assert after[: len(before)] == before and len(after) == len(before) + 1
    only_v2 = client.models.history("m", version=2)
    assert [e.kind for e in only_v2.entries] == ["registered", "alias", "status", "status"]
    page = client.models.history("m", limit=3, offset=2)
    assert page.total == 9 and [e.seq for e in page.entries] == [e.seq for e in after[2:5]]
