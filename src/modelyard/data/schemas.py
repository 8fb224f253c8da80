"""Request and response types of the datasets domain."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field

from modelyard.core.idempotency import Idempotent
from modelyard.core.names import DATASET_NAME as DATASET_NAME
from modelyard.core.schema import Schema
from modelyard.data.diff import DatasetDiff
from modelyard.data.files import DatasetFile, StoredFile
from modelyard.data.formats import ColumnSchema
from modelyard.data.profiling import DatasetProfile
from modelyard.data.quality import QualityReport, Rule
from modelyard.errors import Conflict

# A column name given for a headerless CSV: printable, no NUL or line break.
ColumnName = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f]+$")]
Format = Literal["parquet", "csv", "jsonl"]

__all__ = [
    "ColumnSchema",
    "DatasetDiff",
    "DatasetFile",
    "DatasetProfile",
    "QualityReport",
    "Rule",
    "StoredFile",
]


class RegisterVersion(Idempotent):
    """With an ``idempotency_key``, a retried registration makes one version, not two."""

    name: str = Field(pattern=DATASET_NAME)
    files: list[DatasetFile] = Field(min_length=1, max_length=100_000)
    format: Format | None = Field(None, description="Detected from names/content if omitted.")
    description: str = Field("", max_length=10_000)
    profile: bool = Field(True, description="Compute the profile now (a full scan).")
    header: bool | None = Field(
        None,
        description=(
            "CSV: whether the first row is a header. Unset: it is, unless it looks like a row "
            "of data (then the registration is refused, naming header=false)."
        ),
    )
    columns: list[ColumnName] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="CSV without a header: the column names (default _c0, _c1, ...).",
    )


class DatasetVersion(Schema):
    id: str
    dataset: str
    version: int
    format: Format
    files: list[StoredFile]
    size_bytes: int
    row_count: int
    columns: list[ColumnSchema]
    profile: DatasetProfile | None
    description: str
    created_at: dt.datetime
    created_by: str
    header: bool = Field(
        True, description="False: CSV files without a header row, read with `columns`' names."
    )


class VersionSummary(Schema):
    version: int
    format: Format
    row_count: int
    size_bytes: int
    column_count: int
    created_at: dt.datetime
    created_by: str


class Dataset(Schema):
    name: str
    description: str
    latest_version: int
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime


class DatasetDetail(Dataset):
    versions: list[VersionSummary]


class ListDatasets(Schema):
    prefix: str | None = Field(None, max_length=200)
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31 - 1)


class DatasetList(Schema):
    datasets: list[Dataset]
    total: int


class GetDataset(Schema):
    name: str = Field(pattern=DATASET_NAME)


class GetVersion(Schema):
    name: str = Field(pattern=DATASET_NAME)
    version: int = Field(ge=1, le=2**31 - 1)


class DiffVersions(Schema):
    name: str = Field(pattern=DATASET_NAME)
    base: int = Field(ge=1, le=2**31 - 1, description="The version to compare from.")
    other: int = Field(ge=1, le=2**31 - 1, description="The version to compare to.")


class CheckVersion(Schema):
    name: str = Field(pattern=DATASET_NAME)
    version: int = Field(ge=1, le=2**31 - 1)
    rules: list[Rule] = Field(min_length=1, max_length=1000)


class QualityGateFailed(Conflict):
    """A data-quality report failed where a passing one was required."""

    code = "quality_gate_failed"


class StoredReport(Schema):
    id: str
    dataset: str
    version: int
    passed: bool
    report: QualityReport
    created_at: dt.datetime
    created_by: str

    def raise_if_failed(self) -> StoredReport:
        """Gate a later step on this report: raise :class:`QualityGateFailed` if it failed."""
        if not self.passed:
            failing = [r.name for r in self.report.results if not r.passed]
            raise QualityGateFailed(
                f"data-quality check {self.id} on {self.dataset} v{self.version} failed: "
                f"{', '.join(failing)}",
                details={"report_id": self.id, "failing": failing},
            )
        return self


class ReportList(Schema):
    reports: list[StoredReport]
