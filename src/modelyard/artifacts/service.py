"""Artifact transfer operations: content in, digest out; digest in, verified content out.

Other domains never take bytes in their own requests: a client uploads content here first
and passes the digests, so a large file crosses the wire once and every domain sees the
same immutable, verified objects.
"""

from __future__ import annotations

from typing import BinaryIO

from modelyard.artifacts.schemas import (
    ArtifactList,
    ArtifactRef,
    DamagedArtifact,
    GetArtifact,
    ListArtifacts,
    UploadArtifact,
    VerifyArtifacts,
    VerifyReport,
)
from modelyard.artifacts.streams import object_stream
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
    """Stream a stored object; every chunk is verified before it is sent.

    A damaged object is answered with ``artifact_corrupted`` (500) before any byte when the
    damage is in its first 8 MiB; further into a large object the connection is cut before
    the damaged chunk, so a client never receives a complete-looking wrong body. The
    ``Repr-Digest`` header (RFC 9530) carries the SHA-256 for any client to check.
    """
    return object_stream(ctx.artifacts, req.digest, filename=req.digest)


@ops.operation("GET", "/artifacts", permission="artifacts.read")
def list_objects(ctx: Context, req: ListArtifacts) -> ArtifactList:
    """Stored objects in digest order, a page at a time (sizes as stored, not verified)."""
    found = ctx.artifacts.list_objects(req.after, req.limit + 1)
    page = found[: req.limit]
    return ArtifactList(
        artifacts=[ArtifactRef(digest=i.digest, size=i.size) for i in page],
        next_after=page[-1].digest if len(found) > req.limit else None,
    )


@ops.operation("POST", "/artifacts/verify", permission="artifacts.admin")
def verify(ctx: Context, req: VerifyArtifacts) -> VerifyReport:
    """Read every stored object (or the ones named) and check it against its digest.

    Damaged objects are quarantined (moved aside, not deleted) and listed; putting their
    original bytes again repairs them. Reads the whole store: an operator's scrub.
    """
    ctx.audit_target = "artifacts" if req.digests is None else f"artifacts:{len(req.digests)}"
    report = ctx.artifacts.scrub(req.digests)
    return VerifyReport(
        checked=report.checked,
        bytes=report.bytes,
        damaged=[DamagedArtifact(digest=d.digest, problem=d.problem) for d in report.damaged],
        missing=report.missing,
    )
