"""The artifact store interface and what every backend shares: hashing, manifests, reads.

Nothing a read returns has not been verified. An object up to :data:`WHOLE_LIMIT` bytes
is read whole and hashed before its first byte is handed out. A larger one has a *chunk
manifest*, written with it: the SHA-256 of every :data:`MANIFEST_CHUNK`-sized piece, and
its size; each piece is read and checked against the manifest before it is handed out, so
a corruption anywhere is found before the damaged piece leaves the store. A large object
stored before manifests existed is hashed whole on its first read and given one then.
The expected size of a large object comes from its manifest (and, on S3, the metadata
written with it), never from the stored file alone.

A damaged object is *quarantined*: moved aside under ``quarantine/`` (never deleted, so an
operator can inspect it), logged with its location, and reported as
:class:`~modelyard.errors.ArtifactCorrupted` naming only the digest. From then on reads
of it raise the same error, and putting the original bytes again repairs it.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import io
import itertools
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol, Self

import orjson
from fsspec import AbstractFileSystem

from modelyard.errors import ArtifactCorrupted, InvalidInput, NotFound

log = logging.getLogger("modelyard.artifacts")

# Copy/hash granularity for writes and internal reads. Measured on a 2-vCPU VM: 1 MiB and
# 4 MiB give the same throughput; larger buys nothing and costs memory per concurrent put.
COPY_CHUNK = 4 << 20
#: Objects up to this size are read and hashed whole before any byte is returned.
WHOLE_LIMIT = 8 << 20
#: Larger objects are verified in pieces of this size, against their chunk manifest.
MANIFEST_CHUNK = 8 << 20
#: Temp files of interrupted puts older than this are removed when a store opens.
STALE_TEMP_AGE_S = 3600.0
# Chunks at least this big are hashed on a pool thread (see _copy_hashing).
_PIPELINE_MIN = 256 << 10
# How much written data the local backend lets accumulate before starting its writeback.
_FLUSH_BEHIND = 32 << 20
_HASH_POOL: ThreadPoolExecutor | None = None
_HASH_POOL_LOCK = threading.Lock()
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
OBJECTS = "objects/sha256"
MANIFESTS = "manifests/sha256"
QUARANTINE = "quarantine/sha256"


@dataclass(frozen=True)
class ObjectInfo:
    """A stored object: ``digest`` is the lowercase hex SHA-256 (64 chars, no prefix)."""

    digest: str
    size: int


@dataclass(frozen=True)
class Damage:
    """An object found damaged by :meth:`ArtifactStore.scrub`: its digest and what is wrong."""

    digest: str
    problem: str


@dataclass
class ScrubReport:
    """What :meth:`ArtifactStore.scrub` found: every object checked, and the damaged ones."""

    checked: int = 0
    bytes: int = 0
    damaged: list[Damage] = field(default_factory=list)
    #: Digests asked for by name that are not stored (and were never quarantined).
    missing: list[str] = field(default_factory=list)


@dataclass
class VerifiedObject:
    """An object opened for reading: its size and its bytes, each block verified.

    ``chunks`` yields blocks of at most :data:`MANIFEST_CHUNK` bytes, each checked before
    it is yielded; if a later block is damaged the iterator raises
    :class:`ArtifactCorrupted` instead of yielding it. ``size`` is the verified size (a
    small object) or the one recorded in its manifest.
    """

    digest: str
    size: int
    chunks: Iterator[bytes]

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


class ReadableStream(Protocol):
    """What :meth:`ArtifactStore.put_stream` reads: anything with a binary ``read``.

    Files opened ``"rb"``, ``BytesIO``, ``io.RawIOBase`` subclasses and request bodies all
    qualify. A ``readinto`` method, where present, is used instead to avoid a copy.
    """

    def read(self, size: int = -1, /) -> bytes | None: ...


def show(value: object) -> str:
    """``repr`` of an offending value, cut short so a huge input cannot flood a log."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def validate_digest(digest: str) -> str:
    """Return ``digest`` unchanged if it is 64 lowercase hex characters, else raise.

    Raises :class:`InvalidInput` naming the value for anything else: uppercase, a
    ``sha256:`` prefix, the wrong length, or anything path-like (``../x``), so a digest can
    be used to build a path or an object key without further checks.
    """
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidInput(
            f"invalid digest {show(digest)}: expected a SHA-256 as 64 lowercase hex "
            "characters, without a 'sha256:' prefix"
        )
    return digest


def is_digest(name: str) -> bool:
    """Whether ``name`` is a valid digest (for names found while listing a store)."""
    return bool(_DIGEST_RE.fullmatch(name))


def object_relpath(digest: str) -> str:
    return f"{OBJECTS}/{digest[:2]}/{digest[2:4]}/{digest}"


def manifest_relpath(digest: str) -> str:
    return f"{MANIFESTS}/{digest[:2]}/{digest[2:4]}/{digest}.json"


def quarantine_reldir(digest: str) -> str:
    return f"{QUARANTINE}/{digest[:2]}/{digest[2:4]}/{digest}"


def quarantine_name() -> str:
    """A new name for one quarantined copy: when it was moved aside, plus a random tag."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exactly(reader: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes from ``reader``, fewer only at EOF (raw reads may come up short)."""
    parts: list[bytes] = []
    left = n
    while left > 0:
        part = reader.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _hash_pool() -> ThreadPoolExecutor:
    """Threads that hash while the caller writes (hashlib releases the GIL on big chunks)."""
    global _HASH_POOL
    if _HASH_POOL is None:
        with _HASH_POOL_LOCK:
            if _HASH_POOL is None:
                workers = min(4, os.cpu_count() or 1)
                _HASH_POOL = ThreadPoolExecutor(workers, thread_name_prefix="modelyard-hash")
    return _HASH_POOL


def _read_chunk(stream: ReadableStream, buf: bytearray | None) -> bytes | bytearray | memoryview:
    """The next chunk of ``stream`` (empty at EOF), into ``buf`` when it has ``readinto``."""
    if buf is not None:
        n = getattr(stream, "readinto")(buf)  # noqa: B009 - not part of ReadableStream
        if n is None:
            raise InvalidInput("the stream is non-blocking and had no data ready")
        return memoryview(buf)[:n]
    data: object = stream.read(COPY_CHUNK)
    if data is None:
        raise InvalidInput("the stream is non-blocking and had no data ready")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(
            f"the stream returned {type(data).__name__}, not bytes; open it in binary mode"
        )
    return data


class ChunkDigests:
    """SHA-256 of each ``chunk_size`` piece of a byte stream fed in pieces of any size."""

    def __init__(self, chunk_size: int = MANIFEST_CHUNK) -> None:
        self.chunk_size = chunk_size
        self.digests: list[str] = []
        self._hasher = hashlib.sha256()
        self._filled = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self.chunk_size - self._filled)
            self._hasher.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.chunk_size:
                self.digests.append(self._hasher.hexdigest())
                self._hasher = hashlib.sha256()
                self._filled = 0

    def finish(self) -> tuple[str, ...]:
        if self._filled:
            self.digests.append(self._hasher.hexdigest())
            self._filled = 0
        return tuple(self.digests)


@dataclass(frozen=True)
class Manifest:
    """The chunk digests of one large object, and its size: what reads verify against.

    Encoded as JSON with a ``check`` field (the SHA-256 of the rest), so a damaged manifest
    is recognised and rebuilt instead of condemning an intact object.
    """

    digest: str
    size: int
    chunk_size: int
    chunks: tuple[str, ...]

    def _body(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
        }

    def encode(self) -> bytes:
        body = self._body()
        check = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return orjson.dumps({**body, "check": check}, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def decode(cls, data: bytes, digest: str) -> Manifest | None:
        """The manifest in ``data`` if it is intact and describes ``digest``, else ``None``."""
        try:
            raw = orjson.loads(data)
            manifest = cls(
                digest=raw["digest"],
                size=raw["size"],
                chunk_size=raw["chunk_size"],
                chunks=tuple(raw["chunks"]),
            )
            check = raw["check"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        if (
            manifest.digest != digest
            or not isinstance(manifest.size, int)
            or not isinstance(manifest.chunk_size, int)
            or manifest.chunk_size < 1
            or len(manifest.chunks) != math.ceil(manifest.size / manifest.chunk_size)
            or not all(isinstance(c, str) and _DIGEST_RE.fullmatch(c) for c in manifest.chunks)
        ):
            return None
        body = orjson.dumps(manifest._body(), option=orjson.OPT_SORT_KEYS)
        return manifest if hashlib.sha256(body).hexdigest() == check else None


@dataclass(frozen=True)
class Hashed:
    """What :func:`copy_hashing` learned about the bytes it copied."""

    info: ObjectInfo
    chunks: tuple[str, ...]

    def manifest(self) -> Manifest | None:
        """The object's manifest, or ``None`` for one small enough to be verified whole."""
        if self.info.size <= WHOLE_LIMIT:
            return None
        return Manifest(self.info.digest, self.info.size, MANIFEST_CHUNK, self.chunks)


def copy_hashing(stream: ReadableStream, fd: int, *, flush_behind: bool) -> Hashed:
    """Copy ``stream`` to ``fd`` until EOF, hashing on the way; memory is two chunks.

    Chunk k is hashed (whole-object digest and manifest chunk digests, on two pool threads)
    while it is written here and chunk k+1 is read, so a put costs about max(hash, write)
    rather than their sum. Waiting for chunk k's hashes before submitting k+1 keeps the
    updates in order and frees buffer k for reuse. With ``flush_behind``, written ranges are
    handed to the kernel every 32 MiB (``POSIX_FADV_DONTNEED``: start writeback now, drop
    the pages once clean) so the final fsync has little left to do.

    Uses ``readinto`` into two reused buffers when the stream has it, else ``read``.
    Raises :class:`InvalidInput` for a text stream or a non-blocking stream with no data
    ready (both would otherwise store wrong bytes); the stream's own errors propagate.
    """
    hasher = hashlib.sha256()
    chunker = ChunkDigests()
    size = 0
    flushed = 0
    buffers: list[bytearray | None] = [None, None]
    if hasattr(stream, "readinto"):
        buffers = [bytearray(COPY_CHUNK), bytearray(COPY_CHUNK)]
    advise = flush_behind and hasattr(os, "posix_fadvise")
    pending: list[Future[None]] = []
    try:
        for turn in itertools.count():
            chunk = _read_chunk(stream, buffers[turn % 2])
            for future in pending:
                future.result()
            pending = []
            if not chunk:
                break
            if len(chunk) >= _PIPELINE_MIN:
                pool = _hash_pool()
                pending = [pool.submit(hasher.update, chunk), pool.submit(chunker.update, chunk)]
            else:
                hasher.update(chunk)  # a thread hand-off costs more than hashing this
                chunker.update(chunk)
            write_all(fd, chunk)
            size += len(chunk)
            if advise and size - flushed >= _FLUSH_BEHIND:
                os.posix_fadvise(fd, flushed, size - flushed, os.POSIX_FADV_DONTNEED)
                flushed = size
    finally:
        # Never return (or raise) while a pool thread still reads one of our buffers.
        if pending:
            wait(pending)
    return Hashed(ObjectInfo(hasher.hexdigest(), size), chunker.finish())


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (a file's fsync does not cover it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each new entry's parent directory."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # a concurrent put created it
        fsync_dir(directory.parent)


def create_exclusive(directory: Path, prefix: str) -> tuple[int, Path]:
    """Create a new, uniquely named file in ``directory``; mode 0666 minus the umask.

    The file is ``flock``-ed exclusively for as long as the descriptor is open, so
    :func:`remove_stale_temp_files` never removes a file that a live put still writes.
    """
    path = directory / f"{prefix}{secrets.token_hex(16)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd, path


def remove_stale_temp_files(directory: Path, prefix: str, max_age_s: float) -> int:
    """Remove ``prefix*`` files in ``directory`` left by interrupted writes; how many.

    A file is removed only if it was last written over ``max_age_s`` seconds ago and no
    process holds its lock (see :func:`create_exclusive`). Errors are ignored: cleaning up
    is best-effort and must never stop a store from opening.
    """
    removed = 0
    cutoff = time.time() - max_age_s
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime > cutoff:
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live write holds it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d stale temp file(s) from %s", removed, directory)
    return removed


def _corrupted(digest: str, problem: str) -> ArtifactCorrupted:
    # The message names the digest only: the store's location is the server's business
    # (it is logged where the damage is found, see ArtifactStore._damaged).
    return ArtifactCorrupted(
        f"artifact {digest} is corrupted ({problem}); it was quarantined and will not be "
        "served: upload the original bytes again to repair it",
        details={"digest": digest},
    )


class ArtifactStore(abc.ABC):
    """Immutable objects addressed by SHA-256; see the package docstring for the layout.

    Every method that takes a digest first checks it with :func:`validate_digest`
    (:class:`InvalidInput`). Missing objects raise :class:`NotFound`; objects whose bytes
    do not match their digest raise :class:`ArtifactCorrupted` and are never returned.
    Instances are safe to share between threads; concurrent puts of the same bytes are
    harmless (both publish identical content).
    """

    #: The canonical URL of the store (``file:///abs/root`` or ``s3://bucket/prefix``).
    url: str
    #: The URL scheme this backend registers for in the backend registry.
    scheme: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str) -> Self:
        """Open the store named by ``url``; :class:`ConfigurationError` if it is unusable."""

    # -- writing -------------------------------------------------------------------------

    @abc.abstractmethod
    def put_stream(self, stream: ReadableStream) -> ObjectInfo:
        """Store everything ``stream`` yields until EOF and return its digest and size.

        The bytes are hashed while they are copied (4 MiB chunks, flat memory for any
        size); an object over :data:`WHOLE_LIMIT` gets its chunk manifest. The object
        becomes visible only once it is complete and durable; if the stream raises,
        nothing is stored, no partial file is left, and the stream's exception
        propagates. If an intact object already exists the new copy is discarded (dedup);
        an existing object that is damaged (any byte, any size) or quarantined is replaced,
        which repairs it.
        """

    def put_file(self, path: str | os.PathLike[str]) -> ObjectInfo:
        """Store the file at ``path`` (see :meth:`put_stream`).

        Raises :class:`NotFound` if there is no such file, :class:`InvalidInput` if it is
        a directory.
        """
        try:
            with open(path, "rb") as stream:
                return self.put_stream(stream)
        except FileNotFoundError:
            raise NotFound(f"no such file: {os.fspath(path)!r}") from None
        except IsADirectoryError:
            raise InvalidInput(f"{os.fspath(path)!r} is a directory, not a file") from None

    def put_bytes(self, data: bytes | bytearray | memoryview) -> ObjectInfo:
        """Store ``data`` (see :meth:`put_stream`); for payloads already in memory."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(f"put_bytes needs bytes, not {type(data).__name__}")
        # BytesIO shares an immutable bytes buffer instead of copying it.
        return self.put_stream(io.BytesIO(data))

    def _holds_intact(self, digest: str) -> bool:
        """Whether an intact object is stored under ``digest`` (dedup may skip the write).

        Verifies the stored bytes: comparing sizes alone would keep a same-size corruption
        for ever. A damaged one is quarantined on the way, so the put that asked replaces
        it.
        """
        if not self.exists(digest):
            return False
        try:
            self.verify(digest)
        except (ArtifactCorrupted, NotFound):
            return False
        return True

    # -- metadata ------------------------------------------------------------------------

    @abc.abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether an object is stored under ``digest`` (not verified: a cheap check)."""

    @abc.abstractmethod
    def stat(self, digest: str) -> ObjectInfo:
        """Digest and size, without reading the bytes (the recorded size where there is one).

        :class:`NotFound` if absent; :class:`ArtifactCorrupted` if it was quarantined or
        its stored length differs from the size recorded when it was written.
        """

    @abc.abstractmethod
    def list_objects(self, after: str = "", limit: int = 1000) -> list[ObjectInfo]:
        """Up to ``limit`` stored objects with digests greater than ``after``, in order.

        Sizes are the stored lengths (not verified). Quarantined objects are not listed.
        """

    # -- backend hooks ---------------------------------------------------------------------

    @abc.abstractmethod
    def _open_object(self, digest: str, chunk_size: int) -> tuple[BinaryIO, int]:
        """Open a validated digest for reading: a reader and the stored length.

        Raises :class:`NotFound` if absent, and :class:`ArtifactCorrupted` (through
        :meth:`_damaged`) if the backend can already tell that the object is damaged (a
        size that disagrees with its metadata).
        """

    @abc.abstractmethod
    def _read_manifest(self, digest: str) -> bytes | None:
        """The stored manifest of ``digest``, or ``None`` if there is none."""

    @abc.abstractmethod
    def _write_manifest(self, manifest: Manifest) -> None:
        """Store ``manifest`` (replacing any); it need not be durable: a lost one is rebuilt."""

    @abc.abstractmethod
    def _move_to_quarantine(self, digest: str) -> None:
        """Move the object aside under ``quarantine/`` (never delete it); absent is fine."""

    @abc.abstractmethod
    def _quarantined(self, digest: str) -> bool:
        """Whether a copy of ``digest`` was ever quarantined."""

    def _damaged(self, digest: str, problem: str) -> ArtifactCorrupted:
        """Quarantine a damaged object, log where it was, and return the error to raise."""
        location = self.object_url(digest)
        try:
            self._move_to_quarantine(digest)
        except Exception:  # the error to report is the damage, not a failed move
            log.exception("could not quarantine the damaged artifact %s", location)
        log.error("artifact %s is corrupted (%s); moved to quarantine", location, problem)
        return _corrupted(digest, problem)

    def _absent(self, digest: str) -> Exception:
        """The error for an object that cannot be opened: quarantined, or not found."""
        if self._quarantined(digest):
            return _corrupted(digest, "it was found damaged earlier")
        return NotFound(f"artifact {digest} not found in {self.url}")

    # -- reading -------------------------------------------------------------------------

    def _manifest(self, digest: str) -> Manifest | None:
        data = self._read_manifest(digest)
        if data is None:
            return None
        manifest = Manifest.decode(data, digest)
        if manifest is None:
            log.warning("the manifest of artifact %s is damaged; it will be rebuilt", digest)
        return manifest

    def open_verified(self, digest: str) -> VerifiedObject:
        """Open an object for reading; nothing it yields has not been verified.

        :class:`NotFound`, :class:`InvalidInput` and :class:`ArtifactCorrupted` for damage
        in the first :data:`MANIFEST_CHUNK` bytes (or anywhere in an object up to
        :data:`WHOLE_LIMIT`, or a size that disagrees with the manifest) are raised by this
        call itself, before any byte is returned, so an HTTP handler can still answer with
        an error. Damage further into a large object makes the iterator raise
        :class:`ArtifactCorrupted` in place of the damaged block.
        """
        digest = validate_digest(digest)
        reader, stored = self._open_object(digest, MANIFEST_CHUNK)
        try:
            manifest = self._manifest(digest)
            if manifest is None and stored > WHOLE_LIMIT:
                manifest = self._build_manifest(digest, reader)
                reader.close()
                reader, stored = self._open_object(digest, MANIFEST_CHUNK)
            if manifest is None:
                data = read_exactly(reader, WHOLE_LIMIT + 1)
                reader.close()
                actual = hashlib.sha256(data).hexdigest()
                if actual != digest:
                    raise self._damaged(digest, f"its {len(data)} bytes hash to {actual}")
                return VerifiedObject(digest, len(data), iter((data,) if data else ()))
            if stored != manifest.size:
                raise self._damaged(
                    digest, f"it is {stored} bytes long but was written with {manifest.size}"
                )
            blocks = self._checked_blocks(digest, reader, manifest)
            first = next(blocks, None)  # chunk 0 is checked now, before any response starts
        except BaseException:
            reader.close()
            raise
        chunks = blocks if first is None else _prepend(first, blocks)
        return VerifiedObject(digest, manifest.size, chunks)

    def _checked_blocks(self, digest: str, reader: BinaryIO, manifest: Manifest) -> Iterator[bytes]:
        with reader:
            for index, expected in enumerate(manifest.chunks):
                start = index * manifest.chunk_size
                length = min(manifest.chunk_size, manifest.size - start)
                block = read_exactly(reader, length)
                if len(block) != length:
                    raise self._damaged(
                        digest,
                        f"truncated: {start + len(block)} of {manifest.size} bytes could be read",
                    )
                if hashlib.sha256(block).hexdigest() != expected:
                    raise self._damaged(
                        digest, f"bytes {start}-{start + length - 1} do not match its manifest"
                    )
                yield block

    def _build_manifest(self, digest: str, reader: BinaryIO) -> Manifest:
        """Hash a large object without a manifest whole; store and return its manifest."""
        hasher = hashlib.sha256()
        chunker = ChunkDigests()
        size = 0
        while block := reader.read(COPY_CHUNK):
            hasher.update(block)
            chunker.update(block)
            size += len(block)
        actual = hasher.hexdigest()
        if actual != digest:
            raise self._damaged(digest, f"its {size} bytes hash to {actual}")
        manifest = Manifest(digest, size, MANIFEST_CHUNK, chunker.finish())
        self._write_manifest(manifest)
        return manifest

    def iter_chunks(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the object in verified chunks of at most ``chunk_size`` bytes.

        Raises like :meth:`open_verified`: errors that can be known up front are raised by
        this call, before any chunk is produced; damage found later makes the iterator
        raise :class:`ArtifactCorrupted` before the damaged bytes would be yielded.
        """
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidInput(f"chunk_size must be a positive integer, not {chunk_size!r}")
        return _rechunk(self.open_verified(digest).chunks, chunk_size)

    def get_to_path(self, digest: str, dest: str | os.PathLike[str]) -> ObjectInfo:
        """Write the object to ``dest``, creating parent directories; verified first.

        The bytes go to a temp file beside ``dest`` that is fsynced and renamed over
        ``dest`` only after the whole object was read and verified, so a reader of ``dest``
        sees the old file or the complete new one. On :class:`ArtifactCorrupted`,
        :class:`NotFound` or any other error ``dest`` is untouched and the temp file is
        removed.
        """
        digest = validate_digest(digest)
        target = Path(dest)
        if target.is_dir():
            raise InvalidInput(f"destination {str(target)!r} is a directory, not a file path")
        source = self.open_verified(digest)
        # Opened before anything is created (NotFound leaves no trace).
        try:
            parent = target.parent
            parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = create_exclusive(parent, f".{target.name}.")
            try:
                size = 0
                try:
                    for chunk in source.chunks:
                        write_all(fd, chunk)
                        size += len(chunk)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        finally:
            source.close()
        fsync_dir(parent)
        return ObjectInfo(digest, size)

    def read_bytes(self, digest: str) -> bytes:
        """The whole object, verified. Holds it in memory: for small objects only."""
        return b"".join(self.open_verified(digest).chunks)

    def verify(self, digest: str) -> ObjectInfo:
        """Read the whole object and check it (quarantining it if it is damaged).

        Returns its info; :class:`ArtifactCorrupted` on a mismatch or truncation,
        :class:`NotFound` if absent.
        """
        size = 0
        for chunk in self.open_verified(digest).chunks:
            size += len(chunk)
        return ObjectInfo(digest, size)

    def scrub(self, digests: list[str] | None = None) -> ScrubReport:
        """Verify every stored object (or only ``digests``); damaged ones are quarantined.

        Reads every byte once. A named digest that is absent counts as damaged if it was
        quarantined, else it is listed in ``missing``.
        """
        report = ScrubReport()
        names = [validate_digest(d) for d in digests] if digests is not None else None
        for digest in names if names is not None else self._all_digests():
            try:
                info = self.verify(digest)
            except ArtifactCorrupted as exc:
                report.checked += 1
                report.damaged.append(Damage(digest, exc.message))
                continue
            except NotFound:
                report.missing.append(digest)
                continue
            report.checked += 1
            report.bytes += info.size
        return report

    def _all_digests(self) -> Iterator[str]:
        after = ""
        while page := self.list_objects(after, 1000):
            for info in page:
                yield info.digest
            after = page[-1].digest

    def local_path(self, digest: str) -> Path | None:
        """The object's file on this machine after a full :meth:`verify`, or ``None``.

        Remote backends return ``None`` without checking anything; callers then fall back
        to :meth:`get_to_path`. The file is read-only and must not be modified.
        """
        validate_digest(digest)
        return None

    # -- in-place access for engines that read files themselves (pyarrow, DuckDB) ----------

    @property
    @abc.abstractmethod
    def filesystem(self) -> AbstractFileSystem:
        """An fsspec file system on which :meth:`object_location` paths can be opened."""

    @abc.abstractmethod
    def _root_location(self) -> str:
        """The store root as a path on :attr:`filesystem` (no scheme, no trailing slash)."""

    def object_location(self, digest: str) -> str:
        """The object's path on :attr:`filesystem` (no scheme), for reading in place.

        Reading in place bypasses verification: call :meth:`verify` first where the object
        is not known to be intact.
        """
        return f"{self._root_location()}/{object_relpath(validate_digest(digest))}"

    @abc.abstractmethod
    def object_url(self, digest: str) -> str:
        """The object's fully qualified URL (``file:///…`` or ``s3://…``); not verified."""

    def fsspec(self) -> tuple[AbstractFileSystem, str]:
        """:attr:`filesystem` and the path prefix under which all objects live."""
        return self.filesystem, f"{self._root_location()}/{OBJECTS}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


def _rechunk(blocks: Iterator[bytes], chunk_size: int) -> Iterator[bytes]:
    try:
        for block in blocks:
            if len(block) <= chunk_size:
                yield block
                continue
            view = memoryview(block)
            for start in range(0, len(block), chunk_size):
                yield bytes(view[start : start + chunk_size])
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
