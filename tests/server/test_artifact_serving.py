"""Serving stored objects over HTTP: never an unverified byte, always as an attachment.

Every artifact route (``/api/v1/artifacts/{digest}``, a run's ``artifacts/content`` and
MLflow's ``/api/2.0/mlflow-artifacts/artifacts/...``) answers a damaged object with a JSON
``artifact_corrupted`` error before any body byte, or, for damage deep inside a large
object, cuts the connection before the damaged chunk: never a complete-looking 200.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.client.sdk import Client, connect
from modelyard.core.artifacts import MANIFEST_CHUNK, ArtifactStore
from modelyard.errors import ArtifactCorrupted, PermissionDenied
from modelyard.runtime import Runtime
from testkit import LiveServer, make_settings

MIB = 1 << 20


def payload(size: int, seed: int = 0) -> bytes:
    out = bytearray()
    block = hashlib.sha512(seed.to_bytes(8, "big")).digest()
    while len(out) < size:
        block = hashlib.sha512(block).digest()
        out += block * 64
    return bytes(out[:size])


def overwrite(store: ArtifactStore, digest: str, data: bytes) -> None:
    """Damage an object behind the store's back (the test plays bit rot or an attacker)."""
    location = store.object_location(digest)
    os.chmod(location, 0o644)
    Path(location).write_bytes(data)


def flip(data: bytes, at: int | None = None) -> bytes:
    at = len(data) // 2 if at is None else at
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "flipped byte": flip,
    "truncated": lambda data: data[: len(data) // 3],
    "empty file": lambda data: b"",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    runtime = Runtime(make_settings(tmp_path))
    with LiveServer(runtime) as live:
        yield live
    runtime.close()


@pytest.fixture
def sdk(server: LiveServer) -> Iterator[Client]:
    with connect(server.url) as c:
        yield c


def _run_with_artifact(sdk: Client, server: LiveServer, name: str, data: bytes) -> dict[str, str]:
    """A run holding ``data`` as ``name``: the three URLs that serve it, and its digest."""
    run = sdk.tracking.create_run("serving")
    info = httpx.get(f"{server.url}/api/2.0/mlflow/runs/get", params={"run_id": run.id})
    exp = info.json()["run"]["info"]["experiment_id"]
    mlflow = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{exp}/{run.id}/artifacts/{name}"
    response = httpx.put(mlflow, content=data)
    assert response.status_code == 200, response.text
    digest = hashlib.sha256(data).hexdigest()
    return {
        "digest": digest,
        "native": f"{server.url}/api/v1/artifacts/{digest}",
        "run": f"{server.url}/api/v1/runs/{run.id}/artifacts/content?path={name}",
        "mlflow": mlflow,
    }


ROUTES = ["native", "run", "mlflow"]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("route", ROUTES)
def test_a_damaged_object_is_a_json_error_before_any_body_byte(
    sdk: Client, server: LiveServer, tmp_path: Path, route: str, damage: str
) -> None:
    data = payload(3 * MIB, seed=1)  # the size the SDK once saw as "connection reset"
    urls = _run_with_artifact(sdk, server, "model.bin", data)
    overwrite(server.runtime.artifacts, urls["digest"], DAMAGE[damage](data))
    response = httpx.get(urls[route])
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if route == "mlflow":
        assert body["error_code"] == "INTERNAL_ERROR"
    else:
        assert body["code"] == "artifact_corrupted"
        assert body["details"]["digest"] == urls["digest"]
    assert urls["digest"] in response.text
    assert str(tmp_path) not in response.text  # never the server's filesystem path
    # Reported the same way from now on (it is quarantined), and repaired by a re-upload.
    assert httpx.get(urls[route]).status_code == 500
    assert httpx.put(f"{server.url}/api/v1/artifacts", content=data).status_code == 200
    repaired = httpx.get(urls[route])
    assert repaired.status_code == 200 and repaired.content == data


def test_a_same_size_corruption_is_repaired_by_uploading_the_original(
    sdk: Client, server: LiveServer
) -> None:
    """Dedup checks the stored bytes, not only their size, so the upload replaces them."""
    data = payload(100_000, seed=2)
    ref = sdk.artifacts.upload(data)
    overwrite(server.runtime.artifacts, ref.digest, flip(data))  # never read in between
    assert sdk.artifacts.upload(data) == ref
    assert sdk.artifacts.read_bytes(ref.digest) == data


def test_damage_deep_in_a_large_object_cuts_the_stream_before_the_damaged_chunk(
    sdk: Client, server: LiveServer
) -> None:
    data = payload(2 * MANIFEST_CHUNK + 1000, seed=3)
    urls = _run_with_artifact(sdk, server, "big.bin", data)
    overwrite(server.runtime.artifacts, urls["digest"], flip(data, 2 * MANIFEST_CHUNK + 10))
    for route in ROUTES:
        received = bytearray()
        with httpx.stream("GET", urls[route]) as response:
            if route == ROUTES[0]:
                # Chunks 0 and 1 are intact: the response starts, with the recorded length.
                assert response.status_code == 200
                assert response.headers["content-length"] == str(len(data))
                with pytest.raises(httpx.RemoteProtocolError):
                    for chunk in response.iter_bytes():
                        received += chunk
                # Only verified bytes were sent: a prefix of the original, short of the
                # damaged chunk.
                assert len(received) <= 2 * MANIFEST_CHUNK
                assert data.startswith(bytes(received))
            else:
                # Quarantined by the first read: now refused before any byte.
                assert response.status_code == 500
                response.read()
                assert urls["digest"] in response.text


@pytest.mark.parametrize("transport", ["embedded", "remote"])
@pytest.mark.parametrize("size", [3 * MIB, 2 * MANIFEST_CHUNK + 1000])
def test_the_sdk_reports_artifact_corrupted_with_the_digest(
    tmp_path: Path, transport: str, size: int
) -> None:
    data = payload(size, seed=4)
    runtime = Runtime(make_settings(tmp_path))
    digest = runtime.artifacts.put_bytes(data).digest
    damaged = flip(data, len(data) - 5)  # in the last chunk of the large one
    overwrite(runtime.artifacts, digest, damaged)
    dest = tmp_path / "out" / "model.bin"
    if transport == "embedded":
        runtime.close()
        client = connect(home=tmp_path / "home")
        calls = [lambda: client.artifacts.download(digest, dest)]
        calls.append(lambda: client.artifacts.read_bytes(digest))
        for call in calls:
            with pytest.raises(ArtifactCorrupted, match=digest) as caught:
                call()
            assert caught.value.details["digest"] == digest
        client.close()
    else:
        with LiveServer(runtime) as live, connect(live.url) as client:
            for call in (
                lambda: client.artifacts.download(digest, dest),
                lambda: client.artifacts.read_bytes(digest),
            ):
                with pytest.raises(ArtifactCorrupted, match=digest) as caught:
                    call()
                assert caught.value.details["digest"] == digest
        runtime.close()
    assert not dest.exists()
    assert not any(p.name != "out" for p in dest.parent.iterdir()) if dest.parent.exists() else True


def test_an_intact_object_carries_its_repr_digest_and_exact_length(
    sdk: Client, server: LiveServer
) -> None:
    data = payload(2 * MANIFEST_CHUNK + 1000, seed=5)
    urls = _run_with_artifact(sdk, server, "big.bin", data)
    expected = "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"
    for route in ROUTES:
        response = httpx.get(urls[route])
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["repr-digest"] == expected
        assert response.headers["content-length"] == str(len(data))


def test_verify_scrubs_every_object_and_needs_admin(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path))
    good = runtime.artifacts.put_bytes(b"good")
    bad_data = payload(5000, seed=6)
    bad = runtime.artifacts.put_bytes(bad_data)
    overwrite(runtime.artifacts, bad.digest, bad_data[:100])
    with LiveServer(runtime) as live, connect(live.url) as client:
        report = client.artifacts.verify()
        assert (report.checked, report.bytes) == (2, good.size)
        assert [d.digest for d in report.damaged] == [bad.digest]
        assert [a.digest for a in client.artifacts.list().artifacts] == [good.digest]
        only = client.artifacts.verify([good.digest, "0" * 64])
        assert (only.checked, only.damaged, only.missing) == (1, [], ["0" * 64])
        bad_request = httpx.post(f"{live.url}/api/v1/artifacts/verify", json={"digests": ["x"]})
        assert bad_request.status_code == 400 and "digests" in bad_request.text
    runtime.close()


def test_verify_is_refused_to_a_scientist(tmp_path: Path) -> None:
    from modelyard.client.transport import EmbeddedTransport
    from modelyard.security.service import local_principal

    runtime = Runtime(make_settings(tmp_path, auth=True))
    admin = Client(EmbeddedTransport(runtime, local_principal()))
    admin.users.create("ada", "scientist")
    token = admin.tokens.create("ada").token
    with LiveServer(runtime) as live, connect(live.url, token=token) as ada:
        with pytest.raises(PermissionDenied, match=r"artifacts\.admin"):
            ada.artifacts.verify()
        assert ada.artifacts.list().artifacts == []
    runtime.close()


@pytest.mark.s3
def test_on_s3_a_damaged_later_chunk_is_cut_and_reported_by_the_sdk(
    tmp_path: Path, s3_store_url: str
) -> None:
    runtime = Runtime(make_settings(tmp_path, artifacts_url=s3_store_url))
    data = payload(2 * MANIFEST_CHUNK + 1000, seed=7)
    store = runtime.artifacts
    digest = store.put_bytes(data).digest
    location = store.object_location(digest)
    store.filesystem.pipe_file(
        location, flip(data, 2 * MANIFEST_CHUNK + 10), Metadata=store.filesystem.metadata(location)
    )
    with LiveServer(runtime) as live, connect(live.url) as client:
        with pytest.raises(ArtifactCorrupted, match=digest):
            client.artifacts.read_bytes(digest)
        again = httpx.get(f"{live.url}/api/v1/artifacts/{digest}")
        assert again.status_code == 500 and again.json()["code"] == "artifact_corrupted"
        assert client.artifacts.upload(data).digest == digest  # repaired
        assert client.artifacts.read_bytes(digest) == data
    runtime.close()
