"""SDK wrapper for raw artifacts: upload content, download verified content."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from modelyard.artifacts.schemas import ArtifactRef, GetArtifact, UploadArtifact
from modelyard.client.transport import Transport
from modelyard.errors import ArtifactCorrupted


class ArtifactsAPI:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def upload(self, source: str | os.PathLike[str] | bytes | BinaryIO) -> ArtifactRef:
        """Store a file, bytes or a binary stream; returns its digest and size."""
        if isinstance(source, bytes):
            stream: BinaryIO = io.BytesIO(source)
            return self._t.call("artifacts.upload", UploadArtifact(), stream=stream)  # type: ignore[no-any-return]
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                return self._t.call("artifacts.upload", UploadArtifact(), stream=fh)  # type: ignore[no-any-return]
        return self._t.call("artifacts.upload", UploadArtifact(), stream=source)  # type: ignore[no-any-return]

    def stat(self, digest: str) -> ArtifactRef:
        return self._t.call("artifacts.stat", GetArtifact(digest=digest))  # type: ignore[no-any-return]

    def download(self, digest: str, dest: str | os.PathLike[str]) -> ArtifactRef:
        """Write an object to ``dest`` atomically; the content is checked against ``digest``."""
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
                raise ArtifactCorrupted(
                    f"downloaded content of {digest} hashed to {hasher.hexdigest()}"
                )
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ArtifactRef(digest=digest, size=size)

    def read_bytes(self, digest: str) -> bytes:
        result = self._t.call("artifacts.download", GetArtifact(digest=digest))
        data = b"".join(result.chunks)
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactCorrupted(f"downloaded content of {digest} does not match its digest")
        return data
