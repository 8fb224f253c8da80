"""Request and response types of batch transform.

A batch transform is a job of kind ``transform``: :class:`CreateTransform` is what a
client sends, :class:`WorkerConfig` is the part the in-job program needs (stored in the
job's spec as hyperparameters, so the job alone says what it did), and
:class:`Transform` is the answer: the job, its counts, the failed records and the output
dataset version once it is registered.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from modelyard.core.names import (
    BACKEND_URL,
    DATASET_NAME,
    EXPERIMENT_NAME,
    JOB_ID,
    JOB_NAME,
    MODEL_NAME,
    VERSION_REF,
)
from modelyard.core.schema import Schema
from modelyard.data.files import DatasetFile
from modelyard.jobs.schemas import JobState
from modelyard.transform.config import (
    ERRORS_SHOWN,
    ColumnName,
    Format,
    JoinSource,
    OnError,
    SplitType,
)


class CreateTransform(Schema):
    """Run a registered model version over a dataset version (or uploaded files)."""

    model: str = Field(pattern=MODEL_NAME, description="Model group in the registry.")
    version: str = Field(
        "latest",
        pattern=VERSION_REF,
        description="Version number, alias (production) or 'latest'. Rejected versions are "
        "refused.",
    )
    dataset: str | None = Field(None, pattern=DATASET_NAME, description="Input dataset.")
    dataset_version: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Input dataset version (default: the latest)."
    )
    files: list[DatasetFile] | None = Field(
        None,
        min_length=1,
        max_length=100_000,
        description="Uploaded files instead of a dataset (then give content_type).",
    )
    content_type: Format | None = Field(
        None, description="Input format; default: the dataset version's format."
    )
    split_type: SplitType | None = Field(
        None,
        description="Line (CSV/JSONL lines), Record (Parquet/any rows) or None (a whole file "
        "is one mini-batch). Default: Line for CSV/JSONL, Record for Parquet.",
    )
    batch_size: int = Field(10_000, ge=1, le=5_000_000, description="Rows per mini-batch.")
    max_concurrent: int = Field(
        1, ge=1, le=64, description="Mini-batches predicted at once in each worker (threads)."
    )
    instance_count: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes; each takes every n-th input file by path "
        "(as ShardedByS3Key).",
    )
    join_source: JoinSource = Field(
        "None", description="Input: the input columns are kept beside the predictions."
    )
    input_filter: list[ColumnName] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="Columns fed to the model, in this order (default: every column).",
    )
    output_filter: list[ColumnName] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="Columns of the joined result to keep, in this order (default: all).",
    )
    probabilities: bool = Field(
        False,
        description="Also write probability_<class> columns (classifiers with predict_proba).",
    )
    accept: Format = Field("parquet", description="Format of the output part files.")
    on_error: OnError = Field(
        "continue",
        description="continue: a failed record is reported and left out; stop: the job fails "
        "at the first failed record.",
    )
    max_errors: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,
        description="With continue: the job fails when more records than this failed.",
    )
    output_dataset: str | None = Field(
        None,
        pattern=DATASET_NAME,
        description="Dataset the predictions are registered in as a new version "
        "(default: '<input dataset>-predictions', or '<model>-predictions' for files).",
    )
    name: str | None = Field(None, pattern=JOB_NAME, description="The job's display name.")
    experiment: str = Field("transforms", pattern=EXPERIMENT_NAME)
    backend: str = Field("local", pattern=BACKEND_URL, description="'local', 'ray' or ray://…")
    cpus: int = Field(1, ge=1, le=1024, description="CPUs reserved for the job.")
    memory_mb: int | None = Field(None, ge=16, le=2**24)
    max_runtime_s: int = Field(86_400, ge=1, le=28 * 86_400)
    max_attempts: int = Field(1, ge=1, le=20, description="Attempts, as a job's retry policy.")


class RecordError(Schema):
    """A record the model could not predict: where it is and why."""

    file: str = Field(description="Path of the input file in the dataset.")
    row: int = Field(description="0-based row (CSV: data row after the header; JSONL: line).")
    error: str


class Transform(Schema):
    job_id: str
    name: str
    state: JobState = Field(description="The job's state.")
    created_at: dt.datetime
    created_by: str
    ended_at: dt.datetime | None
    model: str
    model_version: int
    dataset: str | None
    dataset_version: int | None
    output_dataset: str
    output_version: int | None = Field(
        None, description="The dataset version the predictions were registered as."
    )
    output_version_id: str | None = None
    finalized: bool = Field(
        description="Nothing is left to do: the job ended and, if it completed with output, "
        "the output is registered."
    )
    rows_in: int | None = Field(None, description="Rows read (known once the job completed).")
    rows_out: int | None = None
    error_count: int | None = None
    errors: list[RecordError] = Field(
        default_factory=list, description=f"The first {ERRORS_SHOWN} failed records."
    )
    failure_reason: str | None


class GetTransform(Schema):
    job_id: str = Field(pattern=JOB_ID)


class ListTransforms(Schema):
    state: JobState | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31 - 1)


class TransformList(Schema):
    transforms: list[Transform]
    total: int
