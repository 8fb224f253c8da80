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
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar, Self

from fsspec import AbstractFileSystem

from modelyard.core.artifacts.hashing import (
    COPY_CHUNK,
    MANIFEST_CHUNK,
    WHOLE_LIMIT,
    ChunkDigests,
    Manifest,
    ObjectInfo,
    ReadableStream,
    is_digest,
    write_all,
)
from modelyard.errors import ArtifactCorrupted, InvalidInput, NotFound

log = logging.getLogger("modelyard.artifacts")

#: Temp files of interrupted puts older than this are removed when a store opens.
STALE_TEMP_AGE_S = 3600.0
OBJECTS = "objects/sha256"
MANIFESTS = "manifests/sha256"
QUARANTINE = "quarantine/sha256"


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
    """An object opened for reading: its size and its bytes, each piece verified.

    ``chunks`` yields the pieces read (at most the ``piece_size`` asked for); a piece is
    yielded only once the manifest chunk holding it checked out, so if a later chunk is
    damaged the iterator raises :class:`ArtifactCorrupted` instead of yielding it.
    ``size`` is the verified size (a small object) or the one recorded in its manifest.
    """

    digest: str
    size: int
    chunks: Iterator[bytes]

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


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
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidInput(
            f"invalid digest {show(digest)}: expected a SHA-256 as 64 lowercase hex "
            "characters, without a 'sha256:' prefix"
        )
    return digest


def object_relpath(digest: str) -> str:
    return f"{OBJECTS}/{digest[:2]}/{digest[2:4]}/{digest}"


def manifest_relpath(digest: str) -> str:
    return f"{MANIFESTS}/{digest[:2]}/{digest[2:4]}/{digest}.json"


def quarantine_reldir(digest: str) -> str:
    return f"{QUARANTINE}/{digest[:2]}/{digest[2:4]}/{digest}"


def quarantine_name() -> str:
    """A new name for one quarantined copy: when it was moved aside, plus a random tag."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


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
    # On a file system without flock the age check alone protects the file.
    with contextlib.suppress(OSError):
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
            except BlockingIOError:
                continue  # a live write holds it
            except OSError:
                pass  # no flock on this file system: the age alone decides
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

    def open_verified(self, digest: str, piece_size: int = MANIFEST_CHUNK) -> VerifiedObject:
        """Open an object for reading; nothing it yields has not been verified.

        :class:`NotFound`, :class:`InvalidInput` and :class:`ArtifactCorrupted` for damage
        in the first :data:`MANIFEST_CHUNK` bytes (or anywhere in an object up to
        :data:`WHOLE_LIMIT`, or a size that disagrees with the manifest) are raised by this
        call itself, before any byte is returned, so an HTTP handler can still answer with
        an error. Damage further into a large object makes the iterator raise
        :class:`ArtifactCorrupted` in place of the damaged chunk. The iterator yields the
        pieces it read, each at most ``piece_size`` bytes (and at most 8 MiB are held).
        """
        digest = validate_digest(digest)
        piece_size = max(1, min(piece_size, MANIFEST_CHUNK))
        reader, stored = self._open_object(digest, MANIFEST_CHUNK)
        try:
            manifest = self._manifest(digest)
            if manifest is None and stored > WHOLE_LIMIT:
                manifest = self._build_manifest(digest, reader)
                reader.close()
                reader, stored = self._open_object(digest, MANIFEST_CHUNK)
            if manifest is None:
                pieces, size, actual = _read_hashing(reader, WHOLE_LIMIT + 1, piece_size)
                reader.close()
                if actual != digest:
                    raise self._damaged(digest, f"its {size} bytes hash to {actual}")
                return VerifiedObject(digest, size, iter(pieces))
            if stored != manifest.size:
                raise self._damaged(
                    digest, f"it is {stored} bytes long but was written with {manifest.size}"
                )
            pieces_of_chunks = self._checked_chunks(digest, reader, manifest, piece_size)
            first = next(pieces_of_chunks, None)  # chunk 0 is checked before any response
        except BaseException:
            reader.close()
            raise
        chunks = _flatten(first, pieces_of_chunks)
        return VerifiedObject(digest, manifest.size, chunks)

    def _checked_chunks(
        self, digest: str, reader: BinaryIO, manifest: Manifest, piece_size: int
    ) -> Iterator[list[bytes]]:
        """The pieces of each manifest chunk, yielded only once the chunk checked out."""
        with reader:
            for index, expected in enumerate(manifest.chunks):
                start = index * manifest.chunk_size
                length = min(manifest.chunk_size, manifest.size - start)
                pieces, size, actual = _read_hashing(reader, length, piece_size)
                if size != length:
                    raise self._damaged(
                        digest, f"truncated: {start + size} of {manifest.size} bytes could be read"
                    )
                if actual != expected:
                    raise self._damaged(
                        digest, f"bytes {start}-{start + length - 1} do not match its manifest"
                    )
                yield pieces

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
        # Pieces read at 256 KiB or more (fewer reads), split only for smaller chunk sizes.
        source = self.open_verified(digest, max(chunk_size, 256 << 10))
        return _rechunk(source.chunks, chunk_size)

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
        source = self.open_verified(digest, COPY_CHUNK)
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
        return b"".join(self.open_verified(digest, COPY_CHUNK).chunks)

    def verify(self, digest: str) -> ObjectInfo:
        """Read the whole object and check it (quarantining it if it is damaged).

        Returns its info; :class:`ArtifactCorrupted` on a mismatch or truncation,
        :class:`NotFound` if absent.
        """
        size = 0
        for chunk in self.open_verified(digest, COPY_CHUNK).chunks:
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


def _read_hashing(reader: BinaryIO, limit: int, piece_size: int) -> tuple[list[bytes], int, str]:
    """Up to ``limit`` bytes of ``reader`` as pieces of at most ``piece_size``, their total
    length and their SHA-256 (hex)."""
    hasher = hashlib.sha256()
    pieces: list[bytes] = []
    size = 0
    while size < limit:
        piece = reader.read(min(piece_size, limit - size))
        if not piece:
            break
        hasher.update(piece)
        pieces.append(piece)
        size += len(piece)
    return pieces, size, hasher.hexdigest()


def _flatten(first: list[bytes] | None, rest: Iterator[list[bytes]]) -> Iterator[bytes]:
    try:
        if first is None:
            return
        yield from first
        for pieces in rest:
            yield from pieces
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
