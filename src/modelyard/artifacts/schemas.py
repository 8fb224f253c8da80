"""Request and response types for raw artifact transfer."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from modelyard.core.names import DIGEST_PATTERN as DIGEST_PATTERN
from modelyard.core.schema import Schema

Digest = Annotated[str, Field(pattern=DIGEST_PATTERN)]


class UploadArtifact(Schema):
    expected_digest: str | None = Field(
        None,
        pattern=DIGEST_PATTERN,
        description=(
            "If given, the call fails (400) unless the content hashes to it; the content is "
            "still stored under its real digest."
        ),
    )


class ArtifactRef(Schema):
    digest: str = Field(pattern=DIGEST_PATTERN, description="Lowercase hex SHA-256.")
    size: int = Field(ge=0, description="Bytes.")


class GetArtifact(Schema):
    digest: str = Field(pattern=DIGEST_PATTERN)


class ListArtifacts(Schema):
    after: str = Field(
        "",
        pattern=r"^(?:[0-9a-f]{64})?$",
        description="List digests after this one (the previous page's next_after).",
    )
    limit: int = Field(100, ge=1, le=1000, description="At most this many objects.")


class ArtifactList(Schema):
    artifacts: list[ArtifactRef] = Field(description="Stored objects in digest order.")
    next_after: str | None = Field(
        None, description="Pass as `after` for the next page; null on the last page."
    )


class VerifyArtifacts(Schema):
    digests: list[Digest] | None = Field(
        None,
        max_length=10_000,
        description="Only these objects (each a lowercase hex SHA-256); all when omitted.",
    )


class DamagedArtifact(Schema):
    digest: str
    problem: str


class VerifyReport(Schema):
    checked: int = Field(description="Objects read and checked.")
    bytes: int = Field(description="Bytes of the intact objects.")
    damaged: list[DamagedArtifact] = Field(
        description="Objects that do not match their digest, now quarantined."
    )
    missing: list[str] = Field(description="Requested digests that are not stored.")
