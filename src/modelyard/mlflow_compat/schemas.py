"""The MLflow request messages this layer reads (proto3 JSON, snake_case field names).

Unknown fields are ignored, as MLflow's server ignores them; int64 fields accept JSON
numbers or strings. What a field may hold is checked again by the modelyard operation
the request becomes, so these models only give the message its shape.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyValue(Message):
    key: str = Field(max_length=1000)
    value: str = Field("", max_length=8000)


class RunRef(Message):
    """MLflow sends a run's id as ``run_id`` and, for old servers, ``run_uuid``."""

    run_id: str = Field("", max_length=100)
    run_uuid: str = Field("", max_length=100)

    @model_validator(mode="after")
    def _one_id(self) -> RunRef:
        if not self.run_id:
            self.run_id = self.run_uuid
        if not self.run_id:
            raise ValueError("run_id is required")
        return self


class CreateExperiment(Message):
    name: str = Field(min_length=1, max_length=500)
    artifact_location: str | None = Field(None, max_length=2000)
    tags: list[KeyValue] = Field(default_factory=list, max_length=1000)


class ExperimentById(Message):
    experiment_id: str = Field(min_length=1, max_length=100)


class ExperimentByName(Message):
    experiment_name: str = Field(min_length=1, max_length=500)


class SearchExperiments(Message):
    max_results: int = Field(1000, ge=1, le=50_000)
    page_token: str | None = Field(None, max_length=2000)
    filter: str | None = Field(None, max_length=4000)
    order_by: list[str] = Field(default_factory=list, max_length=20)


class CreateRun(Message):
    experiment_id: str = Field("0", max_length=100)
    run_name: str | None = Field(None, max_length=500)
    tags: list[KeyValue] = Field(default_factory=list, max_length=1000)


class UpdateRun(RunRef):
    status: str | None = Field(None, max_length=40)
    run_name: str | None = Field(None, max_length=500)


class Metric(Message):
    key: str = Field(max_length=1000)
    value: float
    timestamp: int | None = None
    step: int = 0


class LogMetric(RunRef, Metric):
    pass


class LogParam(RunRef, KeyValue):
    pass


class SetTag(RunRef, KeyValue):
    pass


class LogBatch(RunRef):
    metrics: list[Metric] = Field(default_factory=list, max_length=10_000)
    params: list[KeyValue] = Field(default_factory=list, max_length=1000)
    tags: list[KeyValue] = Field(default_factory=list, max_length=1000)


class SearchRuns(Message):
    experiment_ids: list[str] = Field(default_factory=list, max_length=100)
    filter: str | None = Field(None, max_length=4000)
    max_results: int = Field(1000, ge=1, le=50_000)
    order_by: list[str] = Field(default_factory=list, max_length=20)
    page_token: str | None = Field(None, max_length=2000)


class GetMetricHistory(RunRef):
    metric_key: str = Field(max_length=1000)


class CreateLoggedModel(Message):
    experiment_id: str = Field(max_length=100)
    name: str | None = Field(None, max_length=500)
    model_type: str | None = Field(None, max_length=500)
    source_run_id: str | None = Field(None, max_length=100)


class FinalizeLoggedModel(Message):
    status: str = Field(max_length=100)


class SearchLoggedModels(Message):
    experiment_ids: list[str] = Field(default_factory=list, max_length=100)
    filter: str | None = Field(None, max_length=4000)
    max_results: int | None = Field(None, ge=1, le=50_000)
    page_token: str | None = Field(None, max_length=2000)


class ListArtifacts(RunRef):
    path: str | None = Field(None, max_length=4096)


# --- model registry --------------------------------------------------------------------


class RegisteredModelName(Message):
    name: str = Field(min_length=1, max_length=500)


class CreateRegisteredModel(RegisteredModelName):
    description: str = Field("", max_length=5000)
    tags: list[KeyValue] = Field(default_factory=list, max_length=100)


class SearchRegisteredModels(Message):
    filter: str | None = Field(None, max_length=4000)
    max_results: int = Field(100, ge=1, le=50_000)
    order_by: list[str] | str = Field(default_factory=list)
    page_token: str | None = Field(None, max_length=2000)


class CreateModelVersion(RegisteredModelName):
    source: str = Field(min_length=1, max_length=4000)
    run_id: str | None = Field(None, max_length=100)
    model_id: str | None = Field(None, max_length=200)
    description: str = Field("", max_length=5000)
    tags: list[KeyValue] = Field(default_factory=list, max_length=100)


class ModelVersionRef(RegisteredModelName):
    version: str = Field(min_length=1, max_length=20)


class SearchModelVersions(Message):
    filter: str | None = Field(None, max_length=4000)
    max_results: int = Field(100, ge=1, le=50_000)
    order_by: list[str] | str = Field(default_factory=list)
    page_token: str | None = Field(None, max_length=2000)


class SetAlias(RegisteredModelName):
    alias: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=20)


class AliasRef(RegisteredModelName):
    alias: str = Field(min_length=1, max_length=200)
