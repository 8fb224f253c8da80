"""Request and response types of the endpoints domain."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from modelyard.core.names import MODEL_NAME, VERSION_REF
from modelyard.core.schema import Schema

ENDPOINT_NAME = r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$"
VARIANT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
METRIC_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,99}$"
MAX_VARIANTS = 10
MAX_REPLICAS = 16

EndpointStatus = Literal["Creating", "InService", "Updating", "RollingBack", "Failed", "Deleting"]
RolloutState = Literal["InProgress", "Completed", "RolledBack", "Failed"]
StrategyType = Literal["all_at_once", "blue_green", "canary", "linear"]
ReplicaState = Literal["Pending", "Starting", "Ready", "Draining", "Stopping", "Failed"]
AlarmMetric = Literal["error_rate", "p99_latency_ms", "custom"]

Finite = Annotated[float, Field(allow_inf_nan=False)]


class Autoscaling(Schema):
    """Target tracking on in-flight requests per replica, and scale to zero.

    Every controller pass samples the requests in flight to the variant's replicas (plus
    requests held while it has none); over the last ``window_s`` seconds the desired
    count is ``ceil(mean / target_in_flight)`` clamped to ``[max(min_replicas, 1),
    max_replicas]``. A scale-out waits ``scale_out_cooldown_s`` and a scale-in
    ``scale_in_cooldown_s`` after the previous change. With ``min_replicas`` 0 the
    variant stops every replica after ``idle_seconds`` without a request; the next
    request is held up to ``cold_start_timeout_s`` while a replica starts.
    """

    min_replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    max_replicas: int = Field(default=4, ge=1, le=MAX_REPLICAS)
    target_in_flight: Finite = Field(default=4.0, gt=0, le=10_000)
    scale_in_cooldown_s: Finite = Field(default=30.0, ge=0, le=86_400)
    scale_out_cooldown_s: Finite = Field(default=5.0, ge=0, le=86_400)
    window_s: Finite = Field(default=10.0, gt=0, le=3600, description="Averaging window.")
    idle_seconds: Finite = Field(default=300.0, gt=0, le=86_400 * 7)
    cold_start_timeout_s: Finite = Field(default=60.0, gt=0, le=600)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas "
                f"({self.max_replicas})"
            )
        return self

    def clamp(self, count: int) -> int:
        return max(max(self.min_replicas, 1), min(self.max_replicas, count))


def _check_backend(url: str) -> str:
    if url != "local":
        from modelyard.compute.backends.ray import ray_address  # imports no Ray
        from modelyard.errors import InvalidInput

        try:
            ray_address(url)
        except InvalidInput as exc:
            raise ValueError(f"placement backend must be 'local' or a Ray URL: {exc}") from None
    return url


class Placement(Schema):
    """Where a variant's replicas run.

    ``local`` (the default): model-server processes on the control plane's machine.
    ``ray`` or ``ray://<head>:<port>``: each replica a Ray actor on the cluster's nodes
    (spread over them), reserving ``num_cpus``; the router forwards to the node.
    """

    backend: Annotated[str, AfterValidator(_check_backend)] = Field(default="local", max_length=300)
    num_cpus: Finite = Field(default=1.0, ge=0, le=1024)


class VariantSpec(Schema):
    """One production variant as a caller asks for it."""

    name: str = Field(default="primary", pattern=VARIANT_NAME)
    model: str = Field(pattern=MODEL_NAME, description="The model group's name.")
    version: str = Field(
        pattern=VERSION_REF,
        description="A version number, an alias or 'latest'; pinned to a number when saved.",
    )
    weight: Finite = Field(default=1.0, ge=0, le=1_000_000)
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    shadow: bool = Field(
        default=False,
        description="Receives a copy of the traffic; its answers are captured, never returned.",
    )
    autoscaling: Autoscaling | None = Field(
        default=None,
        description="Scale the replicas with the load ('replicas' is the starting count, "
        "clamped to the bounds); min_replicas 0 scales to zero when idle.",
    )
    placement: Placement | None = Field(
        default=None,
        description="Where the replicas run: local processes (default) or Ray actors.",
    )


def _check_variants(variants: list[VariantSpec]) -> list[VariantSpec]:
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"variant names must be unique; repeated: {', '.join(duplicates)}")
    if not any(v.weight > 0 for v in variants if not v.shadow):
        raise ValueError("at least one non-shadow variant needs a weight above 0")
    return variants


# A field validator (not a model validator): routes rebuild the body model field by field.
Variants = Annotated[
    list[VariantSpec],
    Field(min_length=1, max_length=MAX_VARIANTS),
    AfterValidator(_check_variants),
]


class Alarm(Schema):
    """Fires when ``metric`` of the new variants, over the current bake, exceeds ``threshold``.

    ``error_rate`` is the share (0..1) of 5xx answers; ``p99_latency_ms`` the 99th
    percentile of the router's latency; ``custom`` the highest value of the metric
    ``name`` put with ``put_metric`` during the bake. ``min_requests`` answers must have
    been seen before ``error_rate`` or ``p99_latency_ms`` is judged.
    """

    metric: AlarmMetric
    threshold: Finite = Field(ge=0)
    name: str | None = Field(default=None, pattern=METRIC_NAME)
    min_requests: int = Field(default=5, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _custom_needs_name(self) -> Alarm:
        if self.metric == "custom" and not self.name:
            raise ValueError("a custom alarm needs the metric's name")
        return self


class Strategy(Schema):
    """How an update shifts traffic from the old variants to the new ones.

    ``all_at_once`` and ``blue_green`` move all traffic in one step; ``canary`` moves
    ``canary_percent`` first, then the rest; ``linear`` moves it in ``linear_steps``
    equal steps. Every step is followed by a bake of ``bake_seconds`` during which the
    alarms are evaluated (``all_at_once`` does not bake). The old variants stay warm
    until the last bake ends.
    """

    type: StrategyType = "blue_green"
    canary_percent: Finite = Field(default=10.0, gt=0, lt=100)
    linear_steps: int = Field(default=4, ge=2, le=20)
    bake_seconds: Finite = Field(default=30.0, ge=0, le=86_400)
    alarms: list[Alarm] = Field(default_factory=list, max_length=10)
    ready_timeout_seconds: Finite = Field(default=300.0, gt=0, le=3600)

    def fractions(self) -> list[float]:
        """The share of traffic on the new variants after each step."""
        if self.type == "canary":
            return [self.canary_percent / 100.0, 1.0]
        if self.type == "linear":
            return [(i + 1) / self.linear_steps for i in range(self.linear_steps)]
        return [1.0]

    def bake(self) -> float:
        return 0.0 if self.type == "all_at_once" else self.bake_seconds


class Capture(Schema):
    """Data capture: a ``percent`` share of requests and answers stored as JSON lines."""

    enabled: bool = True
    percent: Finite = Field(default=100.0, ge=0, le=100)
    max_batch: int = Field(default=1000, ge=1, le=100_000, description="Events per file.")
    flush_seconds: Finite = Field(default=5.0, gt=0, le=3600)


class CreateEndpoint(Schema):
    name: str = Field(pattern=ENDPOINT_NAME)
    variants: Variants
    capture: Capture | None = None


class UpdateEndpoint(Schema):
    name: str = Field(pattern=ENDPOINT_NAME)
    variants: Variants
    strategy: Strategy = Field(default_factory=Strategy)
    capture: Capture | None = Field(default=None, description="Leave out to keep the current.")


class GetEndpoint(Schema):
    name: str = Field(pattern=ENDPOINT_NAME)


class DeleteEndpoint(Schema):
    name: str = Field(pattern=ENDPOINT_NAME)


class ListEndpoints(Schema):
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class ListCapture(Schema):
    name: str = Field(pattern=ENDPOINT_NAME)
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class ListRollouts(Schema):
    name: str = Field(pattern=ENDPOINT_NAME)
    limit: int = Field(default=20, ge=1, le=1000)


class PutMetric(Schema):
    """A value of a custom metric, for ``custom`` alarms (e.g. a business KPI)."""

    name: str = Field(pattern=ENDPOINT_NAME)
    metric: str = Field(pattern=METRIC_NAME)
    value: Finite


class Variant(Schema):
    """A deployed variant: the spec pinned to a model version."""

    id: str
    name: str
    model: str
    version: int
    model_version_id: str
    artifact_digest: str
    artifact_filename: str
    flavor: str
    weight: float
    replicas: int = Field(description="The desired replica count (the autoscaler changes it).")
    shadow: bool
    autoscaling: Autoscaling | None = None
    placement: Placement | None = None
    last_scaling: str = Field(default="", description="The autoscaler's last decision.")
    last_scaling_at: dt.datetime | None = None
    last_cold_start_ms: float | None = Field(
        default=None, description="Request arrival to replica ready, last time from zero."
    )


class VariantStats(Schema):
    """What this process's router has seen for a variant since it started."""

    requests: int
    errors: int
    p50_latency_ms: float | None
    p99_latency_ms: float | None


class Replica(Schema):
    id: str
    variant_id: str
    state: ReplicaState
    host: str
    port: int | None
    pid: int | None
    restarts: int
    message: str
    updated_at: dt.datetime


class RolloutStep(Schema):
    fraction: float
    started_at: dt.datetime | None = None


class Rollout(Schema):
    id: str
    endpoint: str
    strategy: Strategy
    state: RolloutState
    phase: str
    step: int
    steps: list[float]
    from_variants: list[Variant]
    to_variants: list[Variant]
    reason: str
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None


class Endpoint(Schema):
    id: str
    name: str
    status: EndpointStatus
    message: str
    variants: list[Variant]
    traffic: dict[str, float] = Field(description="Live weights by variant id (sum 1).")
    capture: Capture | None
    replicas: list[Replica]
    rollout: Rollout | None
    stats: dict[str, VariantStats]
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    port: int | None = Field(
        description="The endpoint's own address, http://127.0.0.1:<port> (/invocations, "
        "/v2/models/<model>/infer, /ping); None until the controller serves it."
    )


class EndpointList(Schema):
    endpoints: list[Endpoint]
    total: int


class RolloutList(Schema):
    rollouts: list[Rollout]


class CaptureFile(Schema):
    id: str
    endpoint: str
    digest: str
    size: int
    count: int
    first_time: dt.datetime
    last_time: dt.datetime
    created_at: dt.datetime


class CaptureFileList(Schema):
    files: list[CaptureFile]
    total: int
    dropped: int = Field(description="Events this process dropped because its queue was full.")


class ListEvents(Schema):
    name: str = Field(pattern=ENDPOINT_NAME)
    after: int = Field(default=0, ge=0, le=2**62, description="Events after this sequence.")
    limit: int = Field(default=100, ge=1, le=1000)


class EndpointEvent(Schema):
    seq: int
    endpoint: str
    kind: str
    message: str
    detail: dict[str, Any]
    time: dt.datetime


class EventList(Schema):
    events: list[EndpointEvent]


class MetricPut(Schema):
    endpoint: str
    metric: str
    value: float
    time: dt.datetime


def jsonable(value: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = value.model_dump(mode="json")
    return data
