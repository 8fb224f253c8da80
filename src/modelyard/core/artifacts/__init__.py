"""The content-addressed artifact store: immutable objects named by their SHA-256.

Every model file, dataset file and job output is stored once, under the lowercase hex
SHA-256 of its bytes, and is verified whenever it is read, so lineage that records a
digest is exact and a damaged object is never served. Layout, for every backend::

    <root>/objects/sha256/<aa>/<bb>/<64 hex digits>          the objects
    <root>/manifests/sha256/<aa>/<bb>/<64 hex digits>.json   chunk digests of large ones
    <root>/quarantine/sha256/<aa>/<bb>/<64 hex digits>/...   damaged copies, moved aside
    <root>/tmp/                                               local backend: writes in progress

Backends are chosen by URL scheme through :data:`_BACKENDS` (``file`` and ``s3``; a plain
path means ``file``), one module each (:mod:`.local`, :mod:`.s3`); what they share is
in :mod:`.base` (the interface and the reading rules: nothing unverified is ever
returned) and :mod:`.hashing` (hashing while copying, chunk manifests). Both hash while
copying in 4 MiB chunks, so memory stays flat for multi-GB objects, and both publish an
object only once it is complete: the local backend writes a temp file, fsyncs it and
renames it into place; the S3 backend spools to a local temp file and then uploads to
the final key (an S3 PUT, and a completed multipart upload, is atomic).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from modelyard.core.artifacts.base import (
    ArtifactStore,
    Damage,
    ScrubReport,
    VerifiedObject,
    validate_digest,
)
from modelyard.core.artifacts.hashing import MANIFEST_CHUNK, WHOLE_LIMIT, ObjectInfo, ReadableStream
from modelyard.core.artifacts.local import LocalArtifactStore
from modelyard.core.artifacts.s3 import S3ArtifactStore
from modelyard.errors import ConfigurationError

__all__ = [
    "MANIFEST_CHUNK",
    "WHOLE_LIMIT",
    "ArtifactStore",
    "Damage",
    "LocalArtifactStore",
    "ObjectInfo",
    "ReadableStream",
    "S3ArtifactStore",
    "ScrubReport",
    "VerifiedObject",
    "open_store",
    "validate_digest",
]

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
