"""Serving a stored object: verified chunks plus the headers any client can check them by."""

from __future__ import annotations

import base64

from modelyard.core.artifacts import ArtifactStore
from modelyard.core.operations import StreamResult


def repr_digest(digest: str) -> str:
    """The RFC 9530 ``Repr-Digest`` value for a hex SHA-256: ``sha-256=:<base64>:``."""
    return "sha-256=:" + base64.b64encode(bytes.fromhex(digest)).decode("ascii") + ":"


def object_stream(store: ArtifactStore, digest: str, *, filename: str) -> StreamResult:
    """The object as a :class:`StreamResult` whose chunks are all verified before they leave.

    Damage that can be seen before the first byte (anything in an object up to
    ``WHOLE_LIMIT``, the first chunk or the size of a larger one) raises
    :class:`~modelyard.errors.ArtifactCorrupted` here, so the caller answers with an error
    instead of a body. The size comes from the object's verified content or manifest.
    """
    source = store.open_verified(digest, 1 << 20)  # sent as 1 MiB pieces
    return StreamResult(
        chunks=source.chunks,
        size=source.size,
        headers={"X-Modelyard-Digest": digest, "Repr-Digest": repr_digest(digest)},
        filename=filename,
    )
