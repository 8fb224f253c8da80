"""Request and response types for raw artifact transfer."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

DIGEST_PATTERN = r"^[0-9a-f]{64}$"
Digest = Annotated[str, Field(pattern=DIGEST_PATTERN)]


class UploadArtifact(BaseModel):
    expected_digest: str | None = Field(
        None,
        pattern=DIGEST_PATTERN,
        description=(
            "If given, the call fails (400) unless the content hashes to it; the content is "
            "still stored under its real digest."
        ),
    )


class ArtifactRef(BaseModel):
    digest: str = Field(pattern=DIGEST_PATTERN, description="Lowercase hex SHA-256.")
    size: int = Field(ge=0, description="Bytes.")


class GetArtifact(BaseModel):
    digest: str = Field(pattern=DIGEST_PATTERN)


class ListArtifacts(BaseModel):
    after: str = Field(
        "",
        pattern=r"^(?:[0-9a-f]{64})?$",
        description="List digests after this one (the previous page's next_after).",
    )
    limit: int = Field(100, ge=1, le=1000, description="At most this many objects.")


class ArtifactList(BaseModel):
    artifacts: list[ArtifactRef] = Field(description="Stored objects in digest order.")
    next_after: str | None = Field(
        None, description="Pass as `after` for the next page; null on the last page."
    )


class VerifyArtifacts(BaseModel):
    digests: list[Digest] | None = Field(
        None,
        max_length=10_000,
        description="Only these objects (each a lowercase hex SHA-256); all when omitted.",
    )


class DamagedArtifact(BaseModel):
    digest: str
    problem: str


class VerifyReport(BaseModel):
    checked: int = Field(description="Objects read and checked.")
    bytes: int = Field(description="Bytes of the intact objects.")
    damaged: list[DamagedArtifact] = Field(
        description="Objects that do not match their digest, now quarantined."
    )
    missing: list[str] = Field(description="Requested digests that are not stored.")
