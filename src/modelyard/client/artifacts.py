"""SDK wrapper for raw artifacts: upload content, download verified content, list, verify."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from modelyard.artifacts.schemas import (
    ArtifactList,
    ArtifactRef,
    GetArtifact,
    ListArtifacts,
    UploadArtifact,
    VerifyArtifacts,
    VerifyReport,
)
from modelyard.client.transport import Transport
from modelyard.errors import ArtifactCorrupted


class ArtifactsAPI:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def upload(self, source: str | os.PathLike[str] | bytes | BinaryIO) -> ArtifactRef:
        """Store a file, bytes or a binary stream; returns its digest and size.

        Uploading the original bytes of an object the server found damaged repairs it.
        """
        if isinstance(source, bytes):
            stream: BinaryIO = io.BytesIO(source)
            return self._t.call("artifacts.upload", UploadArtifact(), stream=stream)  # type: ignore[no-any-return]
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                return self._t.call("artifacts.upload", UploadArtifact(), stream=fh)  # type: ignore[no-any-return]
        return self._t.call("artifacts.upload", UploadArtifact(), stream=source)  # type: ignore[no-any-return]

    def stat(self, digest: str) -> ArtifactRef:
        return self._t.call("artifacts.stat", GetArtifact(digest=digest))  # type: ignore[no-any-return]

    def list(self, *, after: str = "", limit: int = 100) -> ArtifactList:
        """One page of stored objects in digest order (pass ``next_after`` for the next)."""
        return self._t.call("artifacts.list_objects", ListArtifacts(after=after, limit=limit))  # type: ignore[no-any-return]

    def iter_all(self, page_size: int = 1000) -> Iterator[ArtifactRef]:
        """Every stored object, in digest order, fetched a page at a time."""
        after = ""
        while True:
            page = self.list(after=after, limit=page_size)
            yield from page.artifacts
            if page.next_after is None:
                return
            after = page.next_after

    def verify(self, digests: Sequence[str] | None = None) -> VerifyReport:
        """Check every stored object (or ``digests``) against its digest on the server side.

        Damaged objects are quarantined there and listed in the report; needs the
        ``artifacts.admin`` permission (the admin role).
        """
        req = VerifyArtifacts(digests=None if digests is None else [*digests])
        return self._t.call("artifacts.verify", req)  # type: ignore[no-any-return]

    def download(self, digest: str, dest: str | os.PathLike[str]) -> ArtifactRef:
        """Write an object to ``dest`` atomically; the content is checked against ``digest``.

        Raises :class:`ArtifactCorrupted` (naming the digest) if the stored object is
        damaged; ``dest`` is then left as it was.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        result = self._t.call("artifacts.download", GetArtifact(digest=digest))
        hasher = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in result.chunks:
                    hasher.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if hasher.hexdigest() != digest:
                raise _mismatch(digest, hasher.hexdigest())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ArtifactRef(digest=digest, size=size)

    def read_bytes(self, digest: str) -> bytes:
        result = self._t.call("artifacts.download", GetArtifact(digest=digest))
        data = b"".join(result.chunks)
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise _mismatch(digest, actual)
        return data


def _mismatch(digest: str, actual: str) -> ArtifactCorrupted:
    return ArtifactCorrupted(
        f"downloaded content of artifact {digest} hashed to {actual}", details={"digest": digest}
    )
