"""Request and response types for raw artifact transfer."""

from __future__ import annotations

from pydantic import BaseModel, Field

DIGEST_PATTERN = r"^[0-9a-f]{64}$"


class UploadArtifact(BaseModel):
    expected_digest: str | None = Field(
        None,
        pattern=DIGEST_PATTERN,
        description="If given, the upload is refused unless the content hashes to it.",
    )


class ArtifactRef(BaseModel):
    digest: str = Field(pattern=DIGEST_PATTERN, description="Lowercase hex SHA-256.")
    size: int = Field(ge=0, description="Bytes.")


class GetArtifact(BaseModel):
    digest: str = Field(pattern=DIGEST_PATTERN)
