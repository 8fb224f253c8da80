"""The content-addressed artifact store: immutable objects named by their SHA-256.

Every model file, dataset file and job output is stored once, under the lowercase hex
SHA-256 of its bytes, and is verified again whenever it is read, so lineage that records
a digest is exact and a damaged object is never served. Layout, for every backend::

    <root>/objects/sha256/<aa>/<bb>/<64 hex digits>     the objects
    <root>/tmp/                                          local backend: writes in progress

Backends are chosen by URL scheme through :data:`_BACKENDS` (``file`` and ``s3``; a plain
path means ``file``). Both hash while copying in 4 MiB chunks, so memory stays flat for
multi-GB objects, and both publish an object only once it is complete: the local backend
writes a temp file, fsyncs it and renames it into place; the S3 backend spools to a local
temp file and then uploads to the final key (an S3 PUT, and a completed multipart upload,
is atomic).

Reads go through :meth:`ArtifactStore.iter_chunks`, which hashes as it streams and raises
:class:`~modelyard.errors.ArtifactCorrupted` after the last chunk if the bytes do not
match the digest; every other read (:meth:`~ArtifactStore.get_to_path`,
:meth:`~ArtifactStore.read_bytes`, :meth:`~ArtifactStore.verify`) is built on it.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import itertools
import math
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol, Self
from urllib.parse import unquote, urlsplit

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from modelyard.errors import ArtifactCorrupted, ConfigurationError, InvalidInput, NotFound

__all__ = [
    "ArtifactStore",
    "LocalArtifactStore",
    "ObjectInfo",
    "ReadableStream",
    "S3ArtifactStore",
    "open_store",
    "validate_digest",
]

# Copy/hash granularity for writes and internal reads. Measured on a 2-vCPU VM: 1 MiB and
# 4 MiB give the same throughput; larger buys nothing and costs memory per concurrent put.
_COPY_CHUNK = 4 << 20
# Chunks at least this big are hashed on a pool thread (see _copy_hashing).
_PIPELINE_MIN = 256 << 10
# How much written data the local backend lets accumulate before starting its writeback.
_FLUSH_BEHIND = 32 << 20
_HASH_POOL: ThreadPoolExecutor | None = None
_HASH_POOL_LOCK = threading.Lock()
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_OBJECTS = "objects/sha256"


@dataclass(frozen=True)
class ObjectInfo:
    """A stored object: ``digest`` is the lowercase hex SHA-256 (64 chars, no prefix)."""

    digest: str
    size: int


class ReadableStream(Protocol):
    """What :meth:`ArtifactStore.put_stream` reads: anything with a binary ``read``.

    Files opened ``"rb"``, ``BytesIO``, ``io.RawIOBase`` subclasses and request bodies all
    qualify. A ``readinto`` method, where present, is used instead to avoid a copy.
    """

    def read(self, size: int = -1, /) -> bytes | None: ...


def _show(value: object) -> str:
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
            f"invalid digest {_show(digest)}: expected a SHA-256 as 64 lowercase hex "
            "characters, without a 'sha256:' prefix"
        )
    return digest


def _object_relpath(digest: str) -> str:
    return f"{_OBJECTS}/{digest[:2]}/{digest[2:4]}/{digest}"


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


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
    data: object = stream.read(_COPY_CHUNK)
    if data is None:
        raise InvalidInput("the stream is non-blocking and had no data ready")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(
            f"the stream returned {type(data).__name__}, not bytes; open it in binary mode"
        )
    return data


def _copy_hashing(stream: ReadableStream, fd: int, *, flush_behind: bool) -> ObjectInfo:
    """Copy ``stream`` to ``fd`` until EOF, hashing on the way; memory is two chunks.

    Chunk k is hashed on a pool thread while it is written here and chunk k+1 is read,
    so a put costs about max(hash, write) rather than their sum (measured ~1.5x faster on
    a 2-vCPU VM). Waiting for hash k before submitting k+1 keeps the hash updates in
    order and frees buffer k for reuse. With ``flush_behind``, written ranges are handed
    to the kernel every 32 MiB (``POSIX_FADV_DONTNEED``: start writeback now, drop the
    pages once clean) so the final fsync has little left to do and a multi-GB put does
    not push everything else out of the page cache.

    Uses ``readinto`` into two reused buffers when the stream has it, else ``read``.
    Raises :class:`InvalidInput` for a text stream or a non-blocking stream with no data
    ready (both would otherwise store wrong bytes); the stream's own errors propagate.
    """
    hasher = hashlib.sha256()
    size = 0
    flushed = 0
    buffers: list[bytearray | None] = [None, None]
    if hasattr(stream, "readinto"):
        buffers = [bytearray(_COPY_CHUNK), bytearray(_COPY_CHUNK)]
    advise = flush_behind and hasattr(os, "posix_fadvise")
    pending: Future[None] | None = None
    try:
        for turn in itertools.count():
            chunk = _read_chunk(stream, buffers[turn % 2])
            if pending is not None:
                pending.result()
                pending = None
            if not chunk:
                break
            if len(chunk) >= _PIPELINE_MIN:
                pending = _hash_pool().submit(hasher.update, chunk)
            else:
                hasher.update(chunk)  # a thread hand-off costs more than hashing this
            _write_all(fd, chunk)
            size += len(chunk)
            if advise and size - flushed >= _FLUSH_BEHIND:
                os.posix_fadvise(fd, flushed, size - flushed, os.POSIX_FADV_DONTNEED)
                flushed = size
    finally:
        # Never return (or raise) while a pool thread still reads one of our buffers.
        if pending is not None:
            wait([pending])
    return ObjectInfo(hasher.hexdigest(), size)


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (a file's fsync does not cover it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(path: Path) -> None:
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
        _fsync_dir(directory.parent)


def _create_exclusive(directory: Path, prefix: str) -> tuple[int, Path]:
    """Create a new, uniquely named file in ``directory``; mode 0666 minus the umask."""
    path = directory / f"{prefix}{secrets.token_hex(16)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o666), path


def _corrupted(digest: str, where: str, problem: str) -> ArtifactCorrupted:
    return ArtifactCorrupted(
        f"artifact {digest} at {where} is corrupted: {problem}; it will not be served, "
        "restore it from a copy (or put the original bytes again)",
        details={"digest": digest, "location": where},
    )


class ArtifactStore(abc.ABC):
    """Immutable objects addressed by SHA-256; see the module docstring for the layout.

    Every method that takes a digest first checks it with :func:`validate_digest`
    (:class:`InvalidInput`). Missing objects raise :class:`NotFound`; objects whose bytes
    do not match their digest raise :class:`ArtifactCorrupted` and are never returned.
    Instances are safe to share between threads; concurrent puts of the same bytes are
    harmless (both publish identical content).
    """

    #: The canonical URL of the store (``file:///abs/root`` or ``s3://bucket/prefix``).
    url: str
    #: The URL scheme this backend registers for in :data:`_BACKENDS`.
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
        size). The object becomes visible only once it is complete and durable; if the
        stream raises, nothing is stored, no partial file is left, and the stream's
        exception propagates. If the object already exists the new copy is discarded
        (dedup) — unless the stored one has the wrong size, in which case it is replaced,
        which repairs a truncated object.
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

    # -- metadata ------------------------------------------------------------------------

    @abc.abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether an object is stored under ``digest`` (not verified: a cheap check)."""

    @abc.abstractmethod
    def stat(self, digest: str) -> ObjectInfo:
        """Digest and stored size, without reading the bytes.

        :class:`NotFound` if absent. The S3 backend raises :class:`ArtifactCorrupted` when
        the object's length differs from the size recorded when it was written.
        """

    # -- reading -------------------------------------------------------------------------

    @abc.abstractmethod
    def _open_object(self, digest: str, chunk_size: int) -> tuple[BinaryIO, int]:
        """Open a validated digest for reading: a reader and the number of bytes expected.

        Raises :class:`NotFound` if absent and :class:`ArtifactCorrupted` if the backend
        can already tell that the object is damaged (a size that disagrees with the one
        recorded at write time).
        """

    def iter_chunks(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the object in chunks of at most ``chunk_size`` bytes, verifying it.

        :class:`NotFound`, :class:`InvalidInput` and damage the backend can see from the
        recorded size are raised by this call itself, before any chunk is produced (so an
        HTTP handler can answer 404 before it starts a response). The bytes are hashed as
        they stream; if they do not match the digest, or the object turns out shorter or
        longer than expected, the iterator raises :class:`ArtifactCorrupted` instead of
        finishing. The data has been verified only once the iterator is exhausted, so a
        consumer must buffer (e.g. to a temp file) and commit only after the last chunk.
        """
        digest = validate_digest(digest)
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidInput(f"chunk_size must be a positive integer, not {chunk_size!r}")
        reader, expected = self._open_object(digest, chunk_size)
        return self._verified_chunks(digest, reader, expected, chunk_size)

    def _verified_chunks(
        self, digest: str, reader: BinaryIO, expected: int, chunk_size: int
    ) -> Iterator[bytes]:
        hasher = hashlib.sha256()
        size = 0
        with reader:
            while chunk := reader.read(chunk_size):
                size += len(chunk)
                if size > expected:
                    raise _corrupted(
                        digest, self.object_url(digest), f"longer than its {expected} bytes"
                    )
                hasher.update(chunk)
                yield chunk
        if size != expected:
            raise _corrupted(
                digest,
                self.object_url(digest),
                f"truncated: {size} of {expected} bytes could be read",
            )
        if hasher.hexdigest() != digest:
            raise _corrupted(
                digest, self.object_url(digest), f"its content hashes to {hasher.hexdigest()}"
            )

    def get_to_path(self, digest: str, dest: str | os.PathLike[str]) -> ObjectInfo:
        """Write the object to ``dest``, creating parent directories; verified first.

        The bytes go to a temp file beside ``dest`` that is fsynced and renamed over
        ``dest`` only after the digest matched, so a reader of ``dest`` sees the old file
        or the complete new one. On :class:`ArtifactCorrupted`, :class:`NotFound` or any
        other error ``dest`` is untouched and the temp file is removed.
        """
        digest = validate_digest(digest)
        target = Path(dest)
        if target.is_dir():
            raise InvalidInput(f"destination {str(target)!r} is a directory, not a file path")
        reader, expected = self._open_object(digest, _COPY_CHUNK)
        # Opened before anything is created (NotFound leaves no trace); the outer `with`
        # closes the reader even if creating the temp file fails.
        with reader:
            parent = target.parent
            parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = _create_exclusive(parent, f".{target.name}.")
            try:
                size = 0
                try:
                    for chunk in self._verified_chunks(digest, reader, expected, _COPY_CHUNK):
                        _write_all(fd, chunk)
                        size += len(chunk)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        _fsync_dir(parent)
        return ObjectInfo(digest, size)

    def read_bytes(self, digest: str) -> bytes:
        """The whole object, verified. Holds it in memory: for small objects only."""
        return b"".join(self.iter_chunks(digest, _COPY_CHUNK))

    def verify(self, digest: str) -> ObjectInfo:
        """Read the whole object and check it against its digest.

        Returns its info; :class:`ArtifactCorrupted` on a mismatch or truncation,
        :class:`NotFound` if absent.
        """
        size = 0
        for chunk in self.iter_chunks(digest, _COPY_CHUNK):
            size += len(chunk)
        return ObjectInfo(digest, size)

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
        return f"{self._root_location()}/{_object_relpath(validate_digest(digest))}"

    @abc.abstractmethod
    def object_url(self, digest: str) -> str:
        """The object's fully qualified URL (``file:///…`` or ``s3://…``); not verified."""

    def fsspec(self) -> tuple[AbstractFileSystem, str]:
        """:attr:`filesystem` and the path prefix under which all objects live."""
        return self.filesystem, f"{self._root_location()}/{_OBJECTS}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


# ---------------------------------------------------------------------------------------
# Local folder
# ---------------------------------------------------------------------------------------


class LocalArtifactStore(ArtifactStore):
    """Objects as read-only files under a local folder, written with plain ``os`` calls.

    A put writes ``<root>/tmp/put-<random>``, fsyncs it, renames it into place with
    ``os.replace`` and fsyncs the directory, so after a crash an object is either
    complete or absent. Leftover ``tmp/`` files from a crash are never read and can be
    deleted at any time when no put is running.
    """

    scheme = "file"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = self.root.as_uri()
        self._tmp = self.root / "tmp"
        # digest -> the object file's (device, inode, size, mtime) when this store last
        # hashed it whole and found it intact (see local_path).
        self._verified: dict[str, tuple[int, int, int, int]] = {}
        try:
            _ensure_dir(self.root / _OBJECTS)
            _ensure_dir(self._tmp)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the artifact folder {str(self.root)!r}: {exc.strerror}"
            ) from exc

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Accept a plain path or ``file:///abs/path`` (``file://localhost/…`` too)."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "file" or len(parts.scheme) == 1:
            return cls(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(
                f"artifact store URL {url!r} names the host {parts.netloc!r}; file:// URLs "
                "must be local (file:///absolute/path)"
            )
        if parts.query or parts.fragment:
            raise ConfigurationError(f"artifact store URL {url!r} must not have ? or #")
        return cls(unquote(parts.path))

    def _path(self, digest: str) -> Path:
        return self.root / _object_relpath(validate_digest(digest))

    def put_stream(self, stream: ReadableStream) -> ObjectInfo:
        fd, tmp = _create_exclusive(self._tmp, "put-")
        try:
            try:
                info = _copy_hashing(stream, fd, flush_behind=True)
                final = self._path(info.digest)
                if self._holds(final, info.size):
                    # Dedup: checked before the fsync, which a discarded copy does not need.
                    os.close(fd)
                    fd = -1
                    tmp.unlink()
                    return info
                # Read-only so that nothing opening the object in place can change it.
                os.fchmod(fd, 0o444)
                os.fsync(fd)
            finally:
                if fd >= 0:
                    os.close(fd)
            _ensure_dir(final.parent)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return info

    @staticmethod
    def _holds(final: Path, size: int) -> bool:
        """Whether ``final`` exists with ``size`` bytes (a wrong size gets replaced)."""
        try:
            return final.stat().st_size == size
        except FileNotFoundError:
            return False

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def stat(self, digest: str) -> ObjectInfo:
        try:
            return ObjectInfo(digest, self._path(digest).stat().st_size)
        except FileNotFoundError:
            raise NotFound(f"artifact {digest} not found in {self.url}") from None

    def _open_object(self, digest: str, chunk_size: int) -> tuple[BinaryIO, int]:
        try:
            reader = open(self._path(digest), "rb", buffering=0)  # noqa: SIM115 - closed by the caller
        except FileNotFoundError:
            raise NotFound(f"artifact {digest} not found in {self.url}") from None
        # A local file records no size of its own; its length at open time still catches a
        # file truncated or extended while it is being read.
        return reader, os.fstat(reader.fileno()).st_size

    def local_path(self, digest: str) -> Path:
        """The verified object file (raises like :meth:`verify`); read-only.

        The first call for an object hashes it whole. Later calls on this store hash it
        again only if the file's device, inode, size or modification time changed since,
        as git's index and DVC's cache do: every job reusing a 10 GB dataset would
        otherwise spend seconds re-reading it before starting.
        """
        path = self._path(digest)
        seen = self._verified.get(digest)
        if seen is not None and seen == _identity(path):
            return path
        before = _identity(path)
        self.verify(digest)
        if before is not None and before == _identity(path):  # unchanged while hashed
            self._verified[digest] = before
        return path

    @property
    def filesystem(self) -> AbstractFileSystem:
        return LocalFileSystem()

    def _root_location(self) -> str:
        return self.root.as_posix()

    def object_url(self, digest: str) -> str:
        return self._path(digest).as_uri()


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------------------------------
# S3-compatible object storage
# ---------------------------------------------------------------------------------------

# User metadata written with every object. The size lets a read detect a truncated or
# replaced object before streaming it; the digest guards against an object copied under
# the wrong key.
_META_SIZE = "modelyard-size"
_META_DIGEST = "modelyard-sha256"
_MAX_PARTS = 10_000  # S3's limit on parts in one multipart upload
_MIN_PART = 5 << 20  # S3's minimum size of every part but the last
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


class S3ArtifactStore(ArtifactStore):
    """Objects in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO…) through s3fs.

    URL ``s3://bucket/optional/prefix``. Configuration comes from the environment:
    endpoint ``MODELYARD_S3_ENDPOINT_URL`` (else ``AWS_ENDPOINT_URL``, else AWS), and
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` (else the
    usual botocore credential chain). The bucket is created on the first put if missing.

    A put spools the stream to a local temp file while hashing, then uploads
    it to its final key, so a reader never sees a partial object; uploads above
    ``2 * part_size`` go multipart with at most ``upload_concurrency`` parts in memory.
    The spool lives in :func:`tempfile.gettempdir` (``TMPDIR``): where ``/tmp`` is a RAM
    disk, point ``TMPDIR`` at real disk or multi-GB puts will use memory after all.
    """

    scheme = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        key: str | None = None,
        secret: str | None = None,
        token: str | None = None,
        part_size: int = 8 << 20,
        upload_concurrency: int = 4,
    ) -> None:
        if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
            raise ConfigurationError(
                f"invalid S3 bucket name {bucket!r}: 3-63 characters of a-z, 0-9, '.', '-'"
            )
        if part_size < _MIN_PART:
            raise ConfigurationError(f"part_size must be at least {_MIN_PART} bytes")
        try:
            import s3fs  # an optional dependency: only S3 users install it
        except ImportError as exc:
            raise ConfigurationError(
                "s3:// artifact stores need s3fs: pip install 'modelyard[s3]'"
            ) from exc
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.part_size = part_size
        self.upload_concurrency = max(1, upload_concurrency)
        self._key_prefix = f"{self.prefix}/" if self.prefix else ""
        self._bucket_ready = False
        # No listings cache: existence checks must see objects written by other processes.
        self._fs: Any = s3fs.S3FileSystem(
            key=key,
            secret=secret,
            token=token,
            endpoint_url=endpoint_url,
            use_listings_cache=False,
        )

    @classmethod
    def from_url(cls, url: str) -> Self:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigurationError(
                f"artifact store URL {url!r} has no bucket; expected s3://bucket/prefix"
            )
        if parts.query or parts.fragment:
            raise ConfigurationError(f"artifact store URL {url!r} must not have ? or #")
        env = os.environ
        return cls(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=env.get("MODELYARD_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL"),
            key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret=env.get("AWS_SECRET_ACCESS_KEY") or None,
            token=env.get("AWS_SESSION_TOKEN") or None,
        )

    def _key(self, digest: str) -> str:
        return self._key_prefix + _object_relpath(validate_digest(digest))

    def _access_denied(self, exc: PermissionError) -> ConfigurationError:
        return ConfigurationError(
            f"access to {self.url} was denied ({exc}); check AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY and MODELYARD_S3_ENDPOINT_URL"
        )

    def _head(self, digest: str) -> dict[str, Any] | None:
        """HEAD the object: its response, or ``None`` if it (or the bucket) is absent."""
        try:
            response: dict[str, Any] = self._fs.call_s3(
                "head_object", Bucket=self.bucket, Key=self._key(digest)
            )
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise self._access_denied(exc) from exc
        return response

    def _checked_size(self, digest: str, head: dict[str, Any]) -> int:
        """The object's length, after checking it against the metadata written with it."""
        size = int(head["ContentLength"])
        meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        recorded = meta.get(_META_SIZE)
        if recorded is not None and recorded != str(size):
            raise _corrupted(
                digest,
                self.object_url(digest),
                f"it is {size} bytes long but was written with {recorded}",
            )
        recorded_digest = meta.get(_META_DIGEST)
        if recorded_digest is not None and recorded_digest != digest:
            raise _corrupted(
                digest,
                self.object_url(digest),
                f"it was written as the object {recorded_digest}",
            )
        return size

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            self._fs.call_s3("head_bucket", Bucket=self.bucket)
        except FileNotFoundError:
            # FileExistsError: another process created it in between, which is fine.
            with contextlib.suppress(FileExistsError):
                self._fs.call_s3("create_bucket", Bucket=self.bucket)
        except PermissionError as exc:
            raise self._access_denied(exc) from exc
        self._bucket_ready = True

    def put_stream(self, stream: ReadableStream) -> ObjectInfo:
        fd, spool = tempfile.mkstemp(prefix="modelyard-s3-spool-")
        spool_path = Path(spool)
        try:
            try:
                # No flush-behind: the spool is read back at once and then deleted.
                info = _copy_hashing(stream, fd, flush_behind=False)
            finally:
                os.close(fd)
            head = self._head(info.digest)
            if head is None or int(head["ContentLength"]) != info.size:
                self._upload(spool_path, info)
        finally:
            spool_path.unlink(missing_ok=True)
        return info

    def _upload(self, spool: Path, info: ObjectInfo) -> None:
        self._ensure_bucket()
        # Parts must be large enough that any object fits in S3's 10,000-part limit.
        part = max(self.part_size, math.ceil(info.size / _MAX_PARTS))
        try:
            self._fs.put_file(
                str(spool),
                f"{self.bucket}/{self._key(info.digest)}",
                chunksize=part,
                max_concurrency=self.upload_concurrency,
                ContentType="application/octet-stream",
                Metadata={_META_SIZE: str(info.size), _META_DIGEST: info.digest},
            )
        except PermissionError as exc:
            raise self._access_denied(exc) from exc

    def exists(self, digest: str) -> bool:
        return self._head(digest) is not None

    def stat(self, digest: str) -> ObjectInfo:
        head = self._head(digest)
        if head is None:
            raise NotFound(f"artifact {digest} not found in {self.url}")
        return ObjectInfo(digest, self._checked_size(digest, head))

    def _open_object(self, digest: str, chunk_size: int) -> tuple[BinaryIO, int]:
        head = self._head(digest)
        if head is None:
            raise NotFound(f"artifact {digest} not found in {self.url}")
        size = self._checked_size(digest, head)
        try:
            # Read-ahead blocks of at least 8 MiB keep the number of ranged GETs low while
            # memory stays at one block; passing the size avoids a second HEAD.
            reader: BinaryIO = self._fs.open(
                f"{self.bucket}/{self._key(digest)}",
                "rb",
                block_size=max(chunk_size, 8 << 20),
                cache_type="readahead",
                size=size,
            )
        except FileNotFoundError:
            raise NotFound(f"artifact {digest} not found in {self.url}") from None
        except PermissionError as exc:
            raise self._access_denied(exc) from exc
        return reader, size

    @property
    def filesystem(self) -> AbstractFileSystem:
        return self._fs

    def _root_location(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def object_url(self, digest: str) -> str:
        return f"s3://{self.object_location(digest)}"


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------

#: URL scheme -> backend. A plain path (no scheme, or a Windows drive letter) is ``file``.
_BACKENDS: dict[str, type[ArtifactStore]] = {
    LocalArtifactStore.scheme: LocalArtifactStore,
    S3ArtifactStore.scheme: S3ArtifactStore,
}


def open_store(url: str) -> ArtifactStore:
    """Open the artifact store named by ``url``, choosing the backend by URL scheme.

    ``/path``, ``relative/path``, ``~/path`` and ``file:///path`` open a local folder
    (created if missing); ``s3://bucket/prefix`` opens S3-compatible storage. An unknown
    scheme, or a URL the backend cannot use, raises :class:`ConfigurationError` naming the
    known schemes.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"artifact store URL must be a non-empty string, not {url!r}")
    scheme = urlsplit(url).scheme.lower()
    if len(scheme) <= 1:  # no scheme, or a Windows drive letter such as C:
        scheme = LocalArtifactStore.scheme
    backend = _BACKENDS.get(scheme)
    if backend is None:
        known = ", ".join(f"{name}://" for name in sorted(_BACKENDS))
        raise ConfigurationError(
            f"unknown artifact store scheme {scheme!r} in {url!r}; known schemes: {known} "
            "(a plain path means file://)"
        )
    return backend.from_url(url)
