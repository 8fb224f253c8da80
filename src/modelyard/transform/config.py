"""The settings of the in-job program, and the names it shares with the service.

Kept apart from :mod:`modelyard.transform.schemas` so that the job's process imports
only pydantic for them (the request types pull in the data and jobs domains).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from modelyard.core.schema import Schema

Format = Literal["parquet", "csv", "jsonl"]
SplitType = Literal["Line", "Record", "None"]
JoinSource = Literal["None", "Input"]
OnError = Literal["continue", "stop"]

# Column names as Arrow and the dataset formats allow them; no NUL (PostgreSQL text).
ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00]+$")]

PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"
DATA_CHANNEL = "data"
MODEL_CHANNEL = "model"
# Paths of the worker's results below the job's output/ (each becomes an output artifact).
PARTS_DIR = "data"
ERRORS_FILE = "errors.jsonl"
SUMMARY_FILE = "summary.json"
ERRORS_SHOWN = 100


class WorkerConfig(Schema):
    """What the in-job program needs, stored as the job's hyperparameters."""

    model: str
    model_version: int
    model_version_id: str
    model_filename: str = Field(description="File name of the model artifact in its channel.")
    dataset: str | None
    dataset_version: int | None
    dataset_version_id: str | None
    format: Format
    split_type: SplitType
    batch_size: int
    max_concurrent: int
    workers: int
    join_source: JoinSource
    input_filter: list[str] | None
    output_filter: list[str] | None
    probabilities: bool
    accept: Format
    on_error: OnError
    max_errors: int | None
    output_dataset: str
    csv_column_names: list[ColumnName] | None = Field(
        None,
        description="A headerless CSV input's column names (its files have no header row); "
        "None: the first row of each CSV file is its header.",
    )

    def to_hyperparameters(self) -> dict[str, Any]:
        """Scalars only (hyperparameters are scalars): lists as JSON, None as ''."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump().items():
            if isinstance(value, list):
                out[key] = json.dumps(value)
            elif value is None:
                out[key] = ""
            else:
                out[key] = value
        return out

    @classmethod
    def from_hyperparameters(cls, values: dict[str, Any]) -> WorkerConfig:
        """The inverse of :meth:`to_hyperparameters`; values may be their strings (as in
        ``hyperparameters.json``)."""
        data: dict[str, Any] = {}
        for key in cls.model_fields:
            value = values.get(key)
            if key in _LISTS:
                data[key] = json.loads(value) if value else None
            elif key in _NULLABLE and value in (None, ""):
                data[key] = None
            else:
                data[key] = value
        return cls.model_validate(data)


_LISTS = frozenset({"input_filter", "output_filter", "csv_column_names"})
_NULLABLE = frozenset({"dataset", "dataset_version", "dataset_version_id", "max_errors"})
