"""The artifact store conformance suite, run against the local folder and real S3.

The S3 half talks to a SeaweedFS server started once per session (``fixtures.seaweed``).
Damage is done through the store's own fsspec handle (``store.filesystem`` and
``store.object_location``), so the same test body corrupts a local file or an S3 object.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from modelyard.core.artifacts import (
    MANIFEST_CHUNK,
    ArtifactStore,
    LocalArtifactStore,
    ObjectInfo,
    S3ArtifactStore,
    open_store,
    validate_digest,
)
from modelyard.core.artifacts.base import create_exclusive
from modelyard.errors import ArtifactCorrupted, ConfigurationError, InvalidInput, NotFound

MIB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes (fast: hash-chained blocks)."""
    out = bytearray()
    block = hashlib.sha512(seed.to_bytes(8, "big")).digest()
    while len(out) < size:
        block = hashlib.sha512(block).digest()
        out += block * 64
    return bytes(out[:size])


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ArtifactStore:
    """Every backend, opened by URL as the platform does. Temp files go to ``spool/``."""
    spool = tmp_path / "spool"
    spool.mkdir()
    # The S3 backend spools through tempfile; pointing it here lets tests see leftovers.
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    if request.param == "file":
        return open_store(str(tmp_path / "store"))
    url: str = request.getfixturevalue("s3_store_url")
    return open_store(url)


def stored_objects(store: ArtifactStore) -> list[str]:
    """Every object path in the store, via its fsspec handle."""
    fs, prefix = store.fsspec()
    if not fs.exists(prefix):
        return []
    return sorted(fs.find(prefix))


def leftover_temp_files(store: ArtifactStore, tmp_path: Path) -> list[str]:
    """Files left in the local store's tmp/ or in the S3 spool directory."""
    dirs = [tmp_path / "spool"]
    if isinstance(store, LocalArtifactStore):
        dirs.append(store.root / "tmp")
    return sorted(str(p) for d in dirs for p in d.iterdir())


def overwrite_object(
    store: ArtifactStore, digest: str, data: bytes, *, keep_metadata: bool = False
) -> None:
    """Replace an object's bytes behind the store's back (bit rot, truncation, tampering).

    ``keep_metadata`` (S3): keep the user metadata written with the original object, as a
    partial overwrite by a misbehaving tool would.
    """
    fs = store.filesystem
    location = store.object_location(digest)
    if isinstance(store, LocalArtifactStore):
        os.chmod(location, 0o644)  # objects are read-only; the test is the attacker here
        Path(location).write_bytes(data)
        return
    extra: dict[str, Any] = {}
    if keep_metadata:
        extra["Metadata"] = fs.metadata(location)
    fs.pipe_file(location, data, **extra)


class GeneratorStream(io.RawIOBase):
    """A readable stream backed by a generator of byte chunks (e.g. an HTTP body)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class ReadOnlyStream:
    """Duck-typed: only ``read``, returning short reads of odd sizes."""

    def __init__(self, data: bytes, step: int = 777_777) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def read(self, n: int = -1) -> bytes:
        n = self._step if n < 0 else min(n, self._step)
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


class ChunkedReadStream:
    """Duck-typed: only ``read``, returning the given chunks one per call (ignoring n)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = [c for c in chunks if c]

    def read(self, n: int = -1) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


def failing_chunks(good: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < good:
        yield payload(chunk, seed=sent)
        sent += chunk
    raise ConnectionResetError("client went away mid-upload")


# -- writing -------------------------------------------------------------------------------


def test_roundtrip_bytes(store: ArtifactStore) -> None:
    data = b"hello, artifacts\n" * 1000
    info = store.put_bytes(data)
    assert info == ObjectInfo(sha(data), len(data))
    assert store.exists(info.digest)
    assert store.stat(info.digest) == info
    assert store.read_bytes(info.digest) == data
    assert b"".join(store.iter_chunks(info.digest, chunk_size=1000)) == data
    assert store.verify(info.digest) == info


def test_chunks_respect_chunk_size(store: ArtifactStore) -> None:
    data = payload(10_000)
    info = store.put_bytes(data)
    sizes = [len(c) for c in store.iter_chunks(info.digest, chunk_size=3000)]
    assert sum(sizes) == len(data)
    assert max(sizes) <= 3000


def test_empty_object(store: ArtifactStore) -> None:
    info = store.put_bytes(b"")
    assert info == ObjectInfo(sha(b""), 0)
    assert store.read_bytes(info.digest) == b""
    assert list(store.iter_chunks(info.digest)) == []
    assert store.verify(info.digest) == info


def test_digest_matches_hashlib_for_every_put_flavour(store: ArtifactStore, tmp_path: Path) -> None:
    data = payload(3 * MIB + 12_345, seed=1)
    expected = ObjectInfo(sha(data), len(data))
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    assert store.put_file(source) == expected
    assert store.put_file(str(source)) == expected
    assert store.put_bytes(data) == expected
    assert store.put_bytes(bytearray(data)) == expected
    assert store.put_stream(io.BytesIO(data)) == expected
    assert store.put_stream(ReadOnlyStream(data)) == expected
    with source.open("rb") as f:
        assert store.put_stream(f) == expected
    assert store.read_bytes(expected.digest) == data


def test_dedup_stores_one_copy(store: ArtifactStore, tmp_path: Path) -> None:
    data = payload(100_000, seed=2)
    first = store.put_bytes(data)
    second = store.put_stream(io.BytesIO(data))
    assert first == second
    other = store.put_bytes(data + b"!")
    assert stored_objects(store) == sorted(
        [store.object_location(first.digest), store.object_location(other.digest)]
    )
    assert leftover_temp_files(store, tmp_path) == []


def test_layout_is_sha256_fanout(store: ArtifactStore) -> None:
    info = store.put_bytes(b"layout")
    d = info.digest
    location = store.object_location(d)
    assert location.endswith(f"/objects/sha256/{d[:2]}/{d[2:4]}/{d}")
    fs, prefix = store.fsspec()
    assert location.startswith(prefix + "/")
    with fs.open(location, "rb") as f:  # readable in place, e.g. by pyarrow or DuckDB
        assert f.read() == b"layout"
    assert store.object_url(d).endswith(location)
    assert store.object_url(d).split("://")[0] in {"file", "s3"}


def test_streamed_put_of_many_megabytes(store: ArtifactStore) -> None:
    """A generator-backed stream of odd-sized chunks, bigger than several copy chunks."""
    chunks = [payload(1_234_567, seed=i) for i in range(10)]  # ~11.8 MiB
    data = b"".join(chunks)
    info = store.put_stream(GeneratorStream(iter(chunks)))
    assert info == ObjectInfo(sha(data), len(data))
    digest = hashlib.sha256()
    for chunk in store.iter_chunks(info.digest):
        assert len(chunk) <= MIB
        digest.update(chunk)
    assert digest.hexdigest() == info.digest


def test_mixed_chunk_sizes_hash_in_order(store: ArtifactStore) -> None:
    """Tiny reads are hashed inline, big ones on the hash pool; the order must hold."""
    sizes = [1, 300_000, 7, 5 * MIB, 100, 262_144, 262_143, 2 * MIB + 1, 0, 3, MIB]
    chunks = [payload(n, seed=i) for i, n in enumerate(sizes)]
    data = b"".join(chunks)
    for stream in (GeneratorStream(iter(chunks)), ChunkedReadStream(chunks)):
        assert store.put_stream(stream) == ObjectInfo(sha(data), len(data))
    assert store.read_bytes(sha(data)) == data


def test_concurrent_puts(store: ArtifactStore) -> None:
    datas = [payload(3 * MIB + i, seed=100 + i) for i in range(4)]
    datas.append(datas[0])  # the same object twice at once
    with ThreadPoolExecutor(len(datas)) as pool:
        infos = list(pool.map(lambda d: store.put_stream(io.BytesIO(d)), datas))
    assert infos == [ObjectInfo(sha(d), len(d)) for d in datas]
    for data in datas:
        assert store.read_bytes(sha(data)) == data
    assert len(stored_objects(store)) == 4


def test_failing_stream_leaves_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ConnectionResetError):
        store.put_stream(GeneratorStream(failing_chunks(5 * MIB)))
    assert stored_objects(store) == []
    assert leftover_temp_files(store, tmp_path) == []


def test_failing_stream_does_not_disturb_existing_objects(
    store: ArtifactStore, tmp_path: Path
) -> None:
    kept = store.put_bytes(b"kept")
    with pytest.raises(ConnectionResetError):
        store.put_stream(GeneratorStream(failing_chunks(MIB)))
    assert stored_objects(store) == [store.object_location(kept.digest)]
    assert store.read_bytes(kept.digest) == b"kept"
    assert leftover_temp_files(store, tmp_path) == []


def test_text_stream_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="binary"):
        store.put_stream(io.StringIO("text"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        store.put_bytes("text")  # type: ignore[arg-type]
    assert stored_objects(store) == []
    assert leftover_temp_files(store, tmp_path) == []


def test_put_file_errors(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"missing\.bin"):
        store.put_file(tmp_path / "missing.bin")
    with pytest.raises(InvalidInput, match="directory"):
        store.put_file(tmp_path)


# -- reading: missing and invalid -------------------------------------------------------------

ABSENT = sha(b"never stored")


def test_missing_object(store: ArtifactStore, tmp_path: Path) -> None:
    assert not store.exists(ABSENT)
    with pytest.raises(NotFound, match=ABSENT):
        store.stat(ABSENT)
    # Raised by the call itself, before iteration, so a server can answer 404 up front.
    with pytest.raises(NotFound):
        store.iter_chunks(ABSENT)
    with pytest.raises(NotFound):
        store.read_bytes(ABSENT)
    with pytest.raises(NotFound):
        store.verify(ABSENT)
    dest = tmp_path / "out" / "model.bin"
    with pytest.raises(NotFound):
        store.get_to_path(ABSENT, dest)
    assert not dest.exists()
    if isinstance(store, LocalArtifactStore):
        with pytest.raises(NotFound):
            store.local_path(ABSENT)


BAD_DIGESTS = [
    "../x",
    "../../etc/passwd",
    ABSENT.upper(),
    "sha256:" + ABSENT,
    ABSENT[:63],
    ABSENT + "0",
    ABSENT[:62] + "/x",
    ABSENT[:63] + "\n",
    "",
    "g" * 64,
]


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_invalid_digest_strings(store: ArtifactStore, bad: str, tmp_path: Path) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.exists(bad),
        lambda: store.stat(bad),
        lambda: store.iter_chunks(bad),
        lambda: store.read_bytes(bad),
        lambda: store.verify(bad),
        lambda: store.get_to_path(bad, tmp_path / "dest"),
        lambda: store.local_path(bad),
        lambda: store.object_location(bad),
        lambda: store.object_url(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidInput) as info:
            call()
        assert repr(bad)[:50] in info.value.message
    assert not (tmp_path / "dest").exists()


def test_validate_digest() -> None:
    assert validate_digest(ABSENT) == ABSENT
    for bad in BAD_DIGESTS:
        with pytest.raises(InvalidInput):
            validate_digest(bad)
    with pytest.raises(InvalidInput):
        validate_digest(None)  # type: ignore[arg-type]


def test_invalid_chunk_size(store: ArtifactStore) -> None:
    info = store.put_bytes(b"x")
    for bad in (0, -1):
        with pytest.raises(InvalidInput):
            store.iter_chunks(info.digest, chunk_size=bad)


# -- reading: damage is detected ----------------------------------------------------------------


def _flip_one_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


def assert_every_read_refuses(store: ArtifactStore, digest: str, tmp_path: Path) -> None:
    with pytest.raises(ArtifactCorrupted, match=digest):
        for _ in store.iter_chunks(digest):
            pass
    with pytest.raises(ArtifactCorrupted):
        store.read_bytes(digest)
    with pytest.raises(ArtifactCorrupted):
        store.verify(digest)
    # get_to_path leaves an existing destination exactly as it was, and no temp files.
    dest_dir = tmp_path / "downloads"
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / "model.bin"
    dest.write_bytes(b"previous version")
    with pytest.raises(ArtifactCorrupted):
        store.get_to_path(digest, dest)
    assert dest.read_bytes() == b"previous version"
    assert sorted(p.name for p in dest_dir.iterdir()) == ["model.bin"]
    fresh = dest_dir / "fresh.bin"
    with pytest.raises(ArtifactCorrupted):
        store.get_to_path(digest, fresh)
    assert not fresh.exists()
    assert sorted(p.name for p in dest_dir.iterdir()) == ["model.bin"]
    if isinstance(store, LocalArtifactStore):
        with pytest.raises(ArtifactCorrupted):
            store.local_path(digest)


def test_flipped_byte_is_detected(store: ArtifactStore, tmp_path: Path) -> None:
    data = payload(2 * MIB + 5, seed=3)
    info = store.put_bytes(data)
    overwrite_object(store, info.digest, _flip_one_byte(data), keep_metadata=True)
    assert_every_read_refuses(store, info.digest, tmp_path)


def test_replaced_object_is_detected(store: ArtifactStore, tmp_path: Path) -> None:
    """Different bytes of the same length, without the original metadata."""
    data = payload(300_000, seed=4)
    info = store.put_bytes(data)
    overwrite_object(store, info.digest, payload(300_000, seed=5))
    assert_every_read_refuses(store, info.digest, tmp_path)


def test_a_local_object_is_hashed_again_only_when_its_file_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """local_path (what every job launch calls for its inputs) hashes an object whole once
    per store; a changed file (size, inode or modification time) is hashed again."""
    store = LocalArtifactStore(tmp_path / "store")
    data = payload(MIB + 3, seed=8)
    info = store.put_bytes(data)
    hashed: list[str] = []
    verify = store.verify
    monkeypatch.setattr(store, "verify", lambda d: (hashed.append(d), verify(d))[1])

    path = store.local_path(info.digest)
    assert store.local_path(info.digest) == path and hashed == [info.digest]

    before = path.stat()
    overwrite_object(store, info.digest, _flip_one_byte(data))  # same size, new bytes
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ArtifactCorrupted, match=info.digest):
        store.local_path(info.digest)
    assert hashed == [info.digest, info.digest]
    with pytest.raises(ArtifactCorrupted):  # and again: a failed check is not remembered
        store.local_path(info.digest)


def test_no_byte_of_a_damaged_small_object_is_returned(store: ArtifactStore) -> None:
    """Up to WHOLE_LIMIT an object is hashed whole before its first byte is returned."""
    data = payload(3 * MIB, seed=6)
    info = store.put_bytes(data)
    overwrite_object(store, info.digest, _flip_one_byte(data), keep_metadata=True)
    with pytest.raises(ArtifactCorrupted, match=info.digest):
        store.iter_chunks(info.digest)  # raised by the call itself, before any chunk
    with pytest.raises(ArtifactCorrupted, match=info.digest):
        store.open_verified(info.digest)


def test_an_empty_file_in_place_of_an_object_is_refused(
    store: ArtifactStore, tmp_path: Path
) -> None:
    data = payload(200_000, seed=21)
    info = store.put_bytes(data)
    overwrite_object(store, info.digest, b"", keep_metadata=True)
    assert_every_read_refuses(store, info.digest, tmp_path)


BIG = 2 * MANIFEST_CHUNK + 12_345  # three manifest chunks, the last one short


def test_a_large_object_damaged_in_a_later_chunk_fails_before_that_chunk(
    store: ArtifactStore,
) -> None:
    """Chunks 0 and 1 are intact and served; the flipped byte in chunk 2 is never sent."""
    data = payload(BIG, seed=22)
    info = store.put_bytes(data)
    damaged = bytearray(data)
    damaged[2 * MANIFEST_CHUNK + 7] ^= 0x80
    overwrite_object(store, info.digest, bytes(damaged), keep_metadata=True)
    received = bytearray()
    chunks = store.iter_chunks(info.digest)  # chunk 0 checks out, so this call succeeds
    with pytest.raises(ArtifactCorrupted, match=info.digest):
        for chunk in chunks:
            received += chunk
    assert bytes(received) == data[: 2 * MANIFEST_CHUNK]
    with pytest.raises(ArtifactCorrupted, match="found damaged earlier"):
        store.iter_chunks(info.digest)  # quarantined: refused up front from now on


def test_a_large_object_damaged_in_its_first_chunk_fails_up_front(store: ArtifactStore) -> None:
    data = payload(BIG, seed=23)
    info = store.put_bytes(data)
    overwrite_object(
        store, info.digest, _flip_one_byte(data[:MIB]) + data[MIB:], keep_metadata=True
    )
    with pytest.raises(ArtifactCorrupted):
        store.open_verified(info.digest)


def test_a_truncated_large_object_is_refused_by_its_manifest_size(store: ArtifactStore) -> None:
    """The expected size comes from the manifest, not from the stored file."""
    data = payload(BIG, seed=24)
    info = store.put_bytes(data)
    overwrite_object(store, info.digest, data[: MANIFEST_CHUNK + 5])
    with pytest.raises(ArtifactCorrupted, match=f"written with {BIG}"):
        store.open_verified(info.digest)
    with pytest.raises(ArtifactCorrupted):
        store.stat(info.digest)


def _manifest_location(store: ArtifactStore, digest: str) -> str:
    location = store.object_location(digest)
    return location.replace("/objects/sha256/", "/manifests/sha256/") + ".json"


def test_a_large_object_without_a_manifest_gets_one_on_first_read(store: ArtifactStore) -> None:
    """Objects stored before manifests existed: hashed whole first, then given one."""
    data = payload(BIG, seed=25)
    info = store.put_bytes(data)
    fs = store.filesystem
    manifest = _manifest_location(store, info.digest)
    assert fs.exists(manifest)
    fs.rm(manifest)
    assert b"".join(store.iter_chunks(info.digest)) == data
    assert fs.exists(manifest)


def test_a_legacy_large_object_that_is_damaged_returns_nothing(store: ArtifactStore) -> None:
    data = payload(BIG, seed=26)
    info = store.put_bytes(data)
    store.filesystem.rm(_manifest_location(store, info.digest))
    damaged = bytearray(data)
    damaged[-1] ^= 0x01
    overwrite_object(store, info.digest, bytes(damaged), keep_metadata=True)
    with pytest.raises(ArtifactCorrupted):
        store.iter_chunks(info.digest)  # the whole object is hashed before anything is sent


def test_a_damaged_manifest_is_rebuilt_not_blamed_on_the_object(store: ArtifactStore) -> None:
    data = payload(BIG, seed=27)
    info = store.put_bytes(data)
    fs = store.filesystem
    manifest = _manifest_location(store, info.digest)
    text = fs.cat_file(manifest)
    fs.pipe_file(manifest, text.replace(b'"chunks":["', b'"chunks":["0', 1)[: len(text)])
    assert b"".join(store.iter_chunks(info.digest)) == data
    assert fs.cat_file(manifest) == text


def quarantined_copies(store: ArtifactStore, digest: str) -> list[str]:
    fs = store.filesystem
    folder = store.object_location(digest).replace("/objects/sha256/", "/quarantine/sha256/")
    return fs.find(folder) if fs.exists(folder) else []


def test_a_damaged_object_is_quarantined_and_reported_by_digest_only(
    store: ArtifactStore,
) -> None:
    data = payload(300_000, seed=28)
    info = store.put_bytes(data)
    damaged = _flip_one_byte(data)
    overwrite_object(store, info.digest, damaged, keep_metadata=True)
    with pytest.raises(ArtifactCorrupted) as caught:
        store.read_bytes(info.digest)
    assert caught.value.details == {"digest": info.digest}
    assert "/" not in caught.value.message  # no path or URL of the server's storage
    assert not store.exists(info.digest)
    assert store.list_objects() == []
    [copy] = quarantined_copies(store, info.digest)  # moved aside, not deleted
    assert store.filesystem.cat_file(copy) == damaged
    for read in (store.read_bytes, store.verify, store.stat):
        with pytest.raises(ArtifactCorrupted, match="found damaged earlier"):
            read(info.digest)
    assert store.put_bytes(data) == info  # the original bytes repair it
    assert store.read_bytes(info.digest) == data


@pytest.mark.parametrize("size", [300_000, BIG])
def test_putting_the_original_bytes_repairs_a_same_size_corruption(
    store: ArtifactStore, size: int
) -> None:
    """Dedup verifies the stored object: a same-size corruption is replaced, not kept."""
    data = payload(size, seed=29)
    info = store.put_bytes(data)
    overwrite_object(store, info.digest, _flip_one_byte(data), keep_metadata=True)
    assert store.put_bytes(data) == info  # never read in between
    assert store.read_bytes(info.digest) == data
    assert len(quarantined_copies(store, info.digest)) == 1


def test_scrub_checks_every_object_and_quarantines_the_damaged(store: ArtifactStore) -> None:
    good = [store.put_bytes(payload(1000 + i, seed=30 + i)) for i in range(3)]
    bad_data = payload(5000, seed=40)
    bad = store.put_bytes(bad_data)
    overwrite_object(store, bad.digest, bad_data[:10], keep_metadata=True)
    report = store.scrub()
    assert report.checked == 4
    assert report.bytes == sum(i.size for i in good)
    assert [d.digest for d in report.damaged] == [bad.digest]
    assert not store.exists(bad.digest)
    again = store.scrub()  # quarantined objects are no longer listed
    assert (again.checked, again.damaged) == (3, [])
    only = store.scrub([good[0].digest, bad.digest])
    assert only.checked == 2 and [d.digest for d in only.damaged] == [bad.digest]


def test_list_objects_pages_in_digest_order(store: ArtifactStore) -> None:
    infos = sorted((store.put_bytes(b"object %d" % i) for i in range(7)), key=lambda i: i.digest)
    assert store.list_objects() == infos
    first = store.list_objects(limit=3)
    assert first == infos[:3]
    assert store.list_objects(after=first[-1].digest, limit=3) == infos[3:6]
    assert store.list_objects(after=infos[-1].digest) == []


@pytest.mark.s3
def test_stale_s3_spool_files_are_removed_when_a_store_opens(
    s3_store_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    old = time.time() - 2 * 3600
    for name in ("modelyard-s3-spool-killed", "other-program-file"):
        (spool / name).write_bytes(b"x")
        os.utime(spool / name, (old, old))
    (spool / "modelyard-s3-spool-recent").write_bytes(b"y")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(spool))
        open_store(s3_store_url)
    assert sorted(p.name for p in spool.iterdir()) == [
        "modelyard-s3-spool-recent",
        "other-program-file",
    ]


def test_stale_temp_files_of_killed_puts_are_removed_when_a_store_opens(tmp_path: Path) -> None:
    root = tmp_path / "store"
    LocalArtifactStore(root)
    tmp = root / "tmp"
    old = time.time() - 2 * 3600
    stale = tmp / "put-killed"
    stale.write_bytes(b"x" * 1000)
    os.utime(stale, (old, old))
    recent = tmp / "put-recent"
    recent.write_bytes(b"y")
    # A put still writing (it holds the lock), however long ago it last wrote.
    fd, live = create_exclusive(tmp, "put-")
    try:
        os.utime(live, (old, old))
        other = tmp / "not-ours"
        other.write_bytes(b"z")
        os.utime(other, (old, old))
        LocalArtifactStore(root)
        assert sorted(p.name for p in tmp.iterdir()) == sorted(
            ["put-recent", live.name, "not-ours"]
        )
    finally:
        os.close(fd)
    LocalArtifactStore(root, stale_temp_age_s=0)
    assert sorted(p.name for p in tmp.iterdir()) == ["not-ours"]


@pytest.mark.parametrize("keep_metadata", [False, True])
def test_truncated_object_is_detected(
    store: ArtifactStore, tmp_path: Path, keep_metadata: bool
) -> None:
    data = payload(MIB + 17, seed=7)
    info = store.put_bytes(data)
    overwrite_object(store, info.digest, data[: len(data) // 2], keep_metadata=keep_metadata)
    assert_every_read_refuses(store, info.digest, tmp_path)


def test_object_copied_under_wrong_key_is_detected(store: ArtifactStore, tmp_path: Path) -> None:
    a = store.put_bytes(b"object a")
    b = store.put_bytes(b"object b")
    fs = store.filesystem
    if isinstance(store, LocalArtifactStore):
        os.chmod(store.object_location(a.digest), 0o644)
    fs.copy(store.object_location(b.digest), store.object_location(a.digest))
    assert_every_read_refuses(store, a.digest, tmp_path)


def test_put_again_repairs_a_truncated_object(store: ArtifactStore) -> None:
    data = payload(200_000, seed=9)
    info = store.put_bytes(data)
    overwrite_object(store, info.digest, data[:5])
    assert store.put_bytes(data) == info
    assert store.read_bytes(info.digest) == data


# -- get_to_path and local_path -------------------------------------------------------------


def test_get_to_path_refuses_a_directory(store: ArtifactStore, tmp_path: Path) -> None:
    info = store.put_bytes(b"x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(InvalidInput, match="directory"):
        store.get_to_path(info.digest, tmp_path / "dir")
    assert list((tmp_path / "dir").iterdir()) == []


def test_get_to_path(store: ArtifactStore, tmp_path: Path) -> None:
    data = payload(5 * MIB + 3, seed=10)
    info = store.put_bytes(data)
    dest = tmp_path / "a" / "b" / "model.bin"
    assert store.get_to_path(info.digest, dest) == info
    assert dest.read_bytes() == data
    # Overwrites an existing file atomically.
    dest.write_bytes(b"old")
    assert store.get_to_path(info.digest, str(dest)) == info
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"]


def test_local_path(store: ArtifactStore) -> None:
    info = store.put_bytes(b"weights")
    path = store.local_path(info.digest)
    if isinstance(store, LocalArtifactStore):
        assert path is not None
        assert path.read_bytes() == b"weights"
        assert not os.access(path, os.W_OK) or os.geteuid() == 0
        assert path.stat().st_mode & 0o222 == 0  # read-only for everyone
    else:
        assert path is None


# -- open_store ---------------------------------------------------------------------------------


def test_open_store_plain_path_and_file_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = open_store(str(tmp_path / "s1"))
    assert isinstance(plain, LocalArtifactStore)
    assert plain.root == tmp_path / "s1"
    assert (tmp_path / "s1" / "objects" / "sha256").is_dir()
    assert (tmp_path / "s1" / "tmp").is_dir()
    assert plain.url == (tmp_path / "s1").as_uri()

    by_url = open_store((tmp_path / "s1").as_uri())
    assert isinstance(by_url, LocalArtifactStore) and by_url.root == plain.root
    assert open_store(f"file://localhost{tmp_path / 's1'}").url == plain.url
    digest = plain.put_bytes(b"shared").digest
    assert by_url.read_bytes(digest) == b"shared"

    monkeypatch.chdir(tmp_path)
    relative = open_store("rel/store")
    assert isinstance(relative, LocalArtifactStore)
    assert relative.root == tmp_path / "rel" / "store"


def test_open_store_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        open_store("gs://bucket/prefix")
    assert "'gs'" in info.value.message
    assert "file://" in info.value.message and "s3://" in info.value.message


@pytest.mark.parametrize(
    "url",
    ["", "file://otherhost/data", "s3://", "s3:///prefix", "s3://Bad_Bucket/x", "s3://ab/x"],
)
def test_open_store_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_open_store_s3_reads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store = open_store("s3://my-bucket/some/prefix/")
    assert isinstance(store, S3ArtifactStore)
    assert store.url == "s3://my-bucket/some/prefix"
    assert store.object_location(ABSENT).startswith("my-bucket/some/prefix/objects/sha256/")
    assert store.local_path(ABSENT) is None
    assert store.filesystem.endpoint_url == "http://127.0.0.1:1"


def test_unwritable_local_root_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError):
        open_store(str(tmp_path / "file" / "store"))


# -- S3 specifics ------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_creates_bucket_and_multipart_upload(
    s3_store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above 2 * part_size the upload goes multipart; metadata must survive it."""
    store = open_store(s3_store_url)
    assert isinstance(store, S3ArtifactStore)
    store.part_size = 5 * MIB
    data = payload(12 * MIB + 1, seed=11)
    info = store.put_stream(
        GeneratorStream(iter([data[i : i + MIB] for i in range(0, len(data), MIB)]))
    )
    assert info == ObjectInfo(sha(data), len(data))
    meta = store.filesystem.metadata(store.object_location(info.digest))
    assert meta == {"modelyard-size": str(len(data)), "modelyard-sha256": info.digest}
    assert store.verify(info.digest) == info
    dest = tmp_path / "big.bin"
    store.get_to_path(info.digest, dest)
    assert dest.read_bytes() == data


@pytest.mark.s3
def test_s3_truncation_is_detected_up_front(s3_store_url: str) -> None:
    """S3 records the size at write time, so a short object fails before streaming."""
    store = open_store(s3_store_url)
    data = payload(MIB, seed=8)
    info = store.put_bytes(data)
    overwrite_object(store, info.digest, data[:1000], keep_metadata=True)
    with pytest.raises(ArtifactCorrupted, match="1000 bytes long"):
        store.iter_chunks(info.digest)  # no iteration needed
    with pytest.raises(ArtifactCorrupted):
        store.stat(info.digest)


@pytest.mark.s3
def test_s3_wrong_credentials_are_a_configuration_error(
    s3_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(s3_store_url).put_bytes(b"x")  # the bucket exists now
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    store = open_store(s3_store_url)
    with pytest.raises(ConfigurationError, match="denied"):
        store.put_bytes(b"y")
    with pytest.raises(ConfigurationError, match="denied"):
        store.exists(ABSENT)
