"""Request and response types for raw artifact transfer."""

from __future__ import annotations

from pydantic import BaseModel, Field

DIGEST_PATTERN = r"^[0-9a-f]{64}$"


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
