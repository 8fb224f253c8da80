"""The local-folder artifact backend: objects as read-only files, written with ``os`` calls."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Self
from urllib.parse import unquote, urlsplit

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from modelyard.core.artifacts.base import (
    OBJECTS,
    STALE_TEMP_AGE_S,
    ArtifactStore,
    create_exclusive,
    ensure_dir,
    fsync_dir,
    manifest_relpath,
    object_relpath,
    quarantine_name,
    quarantine_reldir,
    remove_stale_temp_files,
    validate_digest,
)
from modelyard.core.artifacts.hashing import (
    Manifest,
    ObjectInfo,
    ReadableStream,
    copy_hashing,
    is_digest,
    write_all,
)
from modelyard.errors import ArtifactCorrupted, ConfigurationError, NotFound

#: Prefixes of the files this backend writes in ``tmp/`` (cleaned when stale).
_TEMP_PREFIXES = ("put-", "manifest-")


class LocalArtifactStore(ArtifactStore):
    """Objects as read-only files under a local folder, written with plain ``os`` calls.

    Layout: ``objects/sha256/<aa>/<bb>/<digest>`` (the objects),
    ``manifests/sha256/<aa>/<bb>/<digest>.json`` (chunk manifests of large objects),
    ``quarantine/sha256/<aa>/<bb>/<digest>/<when>`` (damaged copies moved aside) and
    ``tmp/`` (writes in progress).

    A put writes ``tmp/put-<random>``, fsyncs it, renames it into place with
    ``os.replace`` and fsyncs the directory, so after a crash an object is either complete
    or absent. Temp files of puts that were killed are removed when a store is opened, once
    they are ``stale_temp_age_s`` old and no live put holds their lock.
    """

    scheme = "file"

    def __init__(
        self, root: str | os.PathLike[str], *, stale_temp_age_s: float = STALE_TEMP_AGE_S
    ) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = self.root.as_uri()
        self._tmp = self.root / "tmp"
        # digest -> the object file's (device, inode, size, mtime) when this store last
        # hashed it whole and found it intact (see local_path).
        self._verified: dict[str, tuple[int, int, int, int]] = {}
        try:
            ensure_dir(self.root / OBJECTS)
            ensure_dir(self._tmp)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the artifact folder {str(self.root)!r}: {exc.strerror}"
            ) from exc
        for prefix in _TEMP_PREFIXES:
            remove_stale_temp_files(self._tmp, prefix, stale_temp_age_s)

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
        return self.root / object_relpath(validate_digest(digest))

    def put_stream(self, stream: ReadableStream) -> ObjectInfo:
        fd, tmp = create_exclusive(self._tmp, "put-")
        try:
            try:
                hashed = copy_hashing(stream, fd, flush_behind=True)
                info = hashed.info
                final = self._path(info.digest)
                if self._holds_intact(info.digest):
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
            manifest = hashed.manifest()
            if manifest is not None:
                # Before the object: a reader never finds a large object without it.
                self._write_manifest(manifest)
            ensure_dir(final.parent)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(final.parent)
        return info

    def _holds_intact(self, digest: str) -> bool:
        try:
            self.local_path(digest)  # remembers what it verified: a second dedup is cheap
        except (ArtifactCorrupted, NotFound):
            return False
        return True

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def stat(self, digest: str) -> ObjectInfo:
        try:
            size = self._path(digest).stat().st_size
        except FileNotFoundError:
            raise self._absent(digest) from None
        manifest = self._manifest(digest)
        if manifest is not None and manifest.size != size:
            raise self._damaged(
                digest, f"it is {size} bytes long but was written with {manifest.size}"
            )
        return ObjectInfo(digest, size)

    def list_objects(self, after: str = "", limit: int = 1000) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        top = self.root / OBJECTS
        for first in _sorted_names(top):
            if first < after[:2]:
                continue
            for second in _sorted_names(top / first):
                if first + second < after[:4]:
                    continue
                for name in _sorted_names(top / first / second):
                    if name <= after or not (is_digest(name) and name[:4] == first + second):
                        continue
                    try:
                        size = (top / first / second / name).stat().st_size
                    except OSError:
                        continue
                    found.append(ObjectInfo(name, size))
                    if len(found) >= limit:
                        return found
        return found

    def _open_object(self, digest: str, chunk_size: int) -> tuple[BinaryIO, int]:
        try:
            reader = open(self._path(digest), "rb", buffering=0)  # noqa: SIM115 - closed by the caller
        except FileNotFoundError:
            raise self._absent(digest) from None
        return reader, os.fstat(reader.fileno()).st_size

    def _read_manifest(self, digest: str) -> bytes | None:
        try:
            return (self.root / manifest_relpath(digest)).read_bytes()
        except FileNotFoundError:
            return None

    def _write_manifest(self, manifest: Manifest) -> None:
        final = self.root / manifest_relpath(manifest.digest)
        fd, tmp = create_exclusive(self._tmp, "manifest-")
        try:
            try:
                write_all(fd, manifest.encode())
            finally:
                os.close(fd)
            ensure_dir(final.parent)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _move_to_quarantine(self, digest: str) -> None:
        self._verified.pop(digest, None)
        folder = self.root / quarantine_reldir(digest)
        ensure_dir(folder)
        try:
            os.replace(self._path(digest), folder / quarantine_name())
        except FileNotFoundError:
            return  # already moved by a concurrent reader

    def _quarantined(self, digest: str) -> bool:
        return (self.root / quarantine_reldir(digest)).is_dir()

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


def _sorted_names(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
