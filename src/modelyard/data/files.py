"""The files of a dataset version, as requests and answers name them.

Apart from the rest of the datasets' schemas because jobs and transforms name dataset files
too: importing these does not import the profile, diff and quality-report models.
"""

from __future__ import annotations

from pydantic import Field

from modelyard.core.names import DIGEST_PATTERN
from modelyard.core.schema import Schema


class DatasetFile(Schema):
    path: str = Field(min_length=1, max_length=1024, description="Relative path in the dataset.")
    digest: str = Field(pattern=DIGEST_PATTERN, description="SHA-256 of an uploaded artifact.")


class StoredFile(DatasetFile):
    size: int
