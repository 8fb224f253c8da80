"""Artifact transfer operations: content in, digest out; digest in, verified content out.

Other domains never take bytes in their own requests: a client uploads content here first
and passes the digests, so a large file crosses the wire once and every domain sees the
same immutable, verified objects.
"""

from __future__ import annotations

from typing import BinaryIO

from modelyard.artifacts.schemas import ArtifactRef, GetArtifact, UploadArtifact
from modelyard.core.operations import Context, OperationSet, StreamResult
from modelyard.errors import InvalidInput

ops = OperationSet("artifacts")


@ops.operation("PUT", "/artifacts", permission="artifacts.write", stream_in=True)
def upload(ctx: Context, req: UploadArtifact, stream: BinaryIO) -> ArtifactRef:
    """Store the request body as a content-addressed object and return its digest."""
    info = ctx.artifacts.put_stream(stream)
    ctx.audit_target = f"artifact:{info.digest}"
    if req.expected_digest is not None and req.expected_digest != info.digest:
        # The object is kept (content-addressed objects are harmless duplicates-free
        # data), but the caller learns its upload was damaged in transit.
        raise InvalidInput(
            f"upload hashed to {info.digest}, not the expected {req.expected_digest}",
            details={"digest": info.digest},
        )
    return ArtifactRef(digest=info.digest, size=info.size)


@ops.operation("GET", "/artifacts/{digest}/meta", permission="artifacts.read")
def stat(ctx: Context, req: GetArtifact) -> ArtifactRef:
    """Size of a stored object (NotFound if absent)."""
    info = ctx.artifacts.stat(req.digest)
    return ArtifactRef(digest=info.digest, size=info.size)


@ops.operation("GET", "/artifacts/{digest}", permission="artifacts.read", stream_out=True)
def download(ctx: Context, req: GetArtifact) -> StreamResult:
    """Stream a stored object; the stream fails rather than end cleanly if it is corrupted."""
    info = ctx.artifacts.stat(req.digest)
    return StreamResult(
        chunks=ctx.artifacts.iter_chunks(req.digest),
        size=info.size,
        headers={"X-Modelyard-Digest": info.digest},
    )
