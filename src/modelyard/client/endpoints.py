"""SDK wrapper for endpoints: ``client.endpoints``.

::

    client.endpoints.create("churn", variants=[{"model": "churn", "version": 3}])
    client.endpoints.wait("churn")
    client.endpoints.predict("churn", [[0.1, 0.2, 0.3]])        # -> parsed JSON
    client.endpoints.update("churn", variants=[{"model": "churn", "version": 4}],
                            strategy={"type": "canary", "canary_percent": 10,
                                      "bake_seconds": 60,
                                      "alarms": [{"metric": "error_rate", "threshold": 0.01}]})
    client.endpoints.wait_rollout("churn")                       # Completed or RolledBack
    client.models.deploy("churn", 4, "churn", strategy={"type": "blue_green"})

Embedded, invocations go through this process's router straight to the replicas (the
endpoints controller runs in this process while the client is open); remote, they go
through the server's router route. Either way the caller needs ``endpoints.write``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from modelyard.client.transport import EmbeddedTransport, RemoteTransport, Transport
from modelyard.endpoints.schemas import (
    Autoscaling,
    Capture,
    CaptureFileList,
    CreateEndpoint,
    DeleteEndpoint,
    Endpoint,
    EndpointList,
    EventList,
    GetEndpoint,
    ListCapture,
    ListEndpoints,
    ListEvents,
    ListRollouts,
    MetricPut,
    Placement,
    PutMetric,
    Rollout,
    RolloutList,
    Strategy,
    UpdateEndpoint,
    VariantSpec,
)
from modelyard.errors import (
    InvalidInput,
    ModelyardError,
    NotFound,
    ServiceUnavailable,
    error_from_dict,
    invalid_input_from,
)

VariantLike = VariantSpec | Mapping[str, Any]
# How ``predict`` sends rows: {"instances": rows} (SageMaker's shape), or the bare list.
BODY_FORMATS = ("instances", "list")


def _build(model: type[BaseModel], **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        raise invalid_input_from(exc) from exc


def _variants(variants: Sequence[VariantLike]) -> list[dict[str, Any]]:
    out = []
    for v in variants:
        data = v.model_dump() if isinstance(v, VariantSpec) else dict(v)
        if "version" in data and isinstance(data["version"], int):
            data["version"] = str(data["version"])
        out.append(data)
    return out


@dataclass
class Invocation:
    """A router answer: the replica's status and body, and which variant answered."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def variant(self) -> str | None:
        return self.headers.get("x-modelyard-variant")

    @property
    def model_version(self) -> str | None:
        return self.headers.get("x-modelyard-model-version")

    def json(self) -> Any:
        return json.loads(self.body)

    def raise_for_status(self) -> None:
        if self.status < 400:
            return
        try:
            body = json.loads(self.body)
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        body.setdefault("message", body.get("error") or f"HTTP {self.status}")
        raise error_from_dict(self.status, body)


class EndpointsAPI:
    """Endpoints, rollouts, invocations and capture files (``client.endpoints``)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def _ensure_controller(self) -> None:
        """Embedded: run the endpoints controller in this process while the client is open."""
        if isinstance(self._t, EmbeddedTransport):
            self._t.runtime.start_background()

    def create(
        self,
        name: str,
        variants: Sequence[VariantLike],
        *,
        capture: Capture | Mapping[str, Any] | None = None,
    ) -> Endpoint:
        """Create an endpoint; its replicas start in the background (see :meth:`wait`)."""
        req = _build(
            CreateEndpoint,
            name=name,
            variants=_variants(variants),
            capture=dict(capture) if isinstance(capture, Mapping) else capture,
        )
        self._ensure_controller()
        result: Endpoint = self._t.call("endpoints.create_endpoint", req)
        return result

    def update(
        self,
        name: str,
        variants: Sequence[VariantLike],
        *,
        strategy: Strategy | Mapping[str, Any] | None = None,
        capture: Capture | Mapping[str, Any] | None = None,
    ) -> Endpoint:
        """Change the variants; a new model version is rolled out per ``strategy``."""
        fields: dict[str, Any] = {"name": name, "variants": _variants(variants)}
        if strategy is not None:
            fields["strategy"] = dict(strategy) if isinstance(strategy, Mapping) else strategy
        if capture is not None:
            fields["capture"] = dict(capture) if isinstance(capture, Mapping) else capture
        req = _build(UpdateEndpoint, **fields)
        self._ensure_controller()
        result: Endpoint = self._t.call("endpoints.update_endpoint", req)
        return result

    def describe(self, name: str) -> Endpoint:
        result: Endpoint = self._t.call("endpoints.get_endpoint", _build(GetEndpoint, name=name))
        return result

    get = describe

    def list(self, *, limit: int = 100, offset: int = 0) -> EndpointList:
        req = _build(ListEndpoints, limit=limit, offset=offset)
        result: EndpointList = self._t.call("endpoints.list_endpoints", req)
        return result

    def delete(self, name: str, *, wait: bool = False, timeout: float = 120.0) -> Endpoint:
        """Stop the replicas and remove the endpoint (with ``wait``, until it is gone)."""
        self._ensure_controller()
        result: Endpoint = self._t.call(
            "endpoints.delete_endpoint", _build(DeleteEndpoint, name=name)
        )
        if wait:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.describe(name)
                except NotFound:
                    break
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(f"endpoint {name!r} not deleted in {timeout:g} s")
                time.sleep(0.2)
        return result

    def rollouts(self, name: str, *, limit: int = 20) -> RolloutList:
        req = _build(ListRollouts, name=name, limit=limit)
        result: RolloutList = self._t.call("endpoints.list_rollouts", req)
        return result

    def events(self, name: str, *, after: int = 0, limit: int = 100) -> EventList:
        req = _build(ListEvents, name=name, after=after, limit=limit)
        result: EventList = self._t.call("endpoints.list_events", req)
        return result

    def capture_files(self, name: str, *, limit: int = 100, offset: int = 0) -> CaptureFileList:
        req = _build(ListCapture, name=name, limit=limit, offset=offset)
        result: CaptureFileList = self._t.call("endpoints.list_capture", req)
        return result

    def put_metric(self, name: str, metric: str, value: float) -> MetricPut:
        """Record a custom metric value (read by ``custom`` rollout alarms)."""
        req = _build(PutMetric, name=name, metric=metric, value=value)
        result: MetricPut = self._t.call("endpoints.put_metric", req)
        return result

    # -- waiting ---------------------------------------------------------------------------

    def wait(self, name: str, *, timeout: float = 120.0) -> Endpoint:
        """Wait until the endpoint is InService with no rollout in progress."""
        self._ensure_controller()
        deadline = time.monotonic() + timeout
        while True:
            ep = self.describe(name)
            if ep.status == "Failed":
                raise ModelyardError(f"endpoint {name!r} failed: {ep.message}")
            if ep.status == "InService":
                return ep
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"endpoint {name!r} is still {ep.status} after {timeout:g} s"
                )
            time.sleep(0.2)

    def wait_rollout(self, name: str, *, timeout: float = 600.0) -> Rollout:
        """Wait for the latest rollout to end; it is returned (Completed, RolledBack...)."""
        self._ensure_controller()
        deadline = time.monotonic() + timeout
        while True:
            ep = self.describe(name)
            if ep.rollout is None:
                raise NotFound(f"endpoint {name!r} has no rollout")
            if ep.rollout.state != "InProgress":
                return ep.rollout
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"the rollout of {name!r} still runs after {timeout:g} s")
            time.sleep(0.2)

    # -- invoking --------------------------------------------------------------------------

    def invoke(
        self,
        name: str,
        body: bytes | str,
        *,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> Invocation:
        """Send one request through the router; the answer as it came (any status).

        Raises NotFound for an unknown endpoint and ServiceUnavailable when no replica is
        ready; a model's own error is an answer with status >= 400 (see
        :meth:`Invocation.raise_for_status`).
        """
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        _build(GetEndpoint, name=name)  # a clear 400 for an impossible name
        if isinstance(self._t, EmbeddedTransport):
            return self._invoke_embedded(name, data, content_type, accept)
        if isinstance(self._t, RemoteTransport):
            headers = {"content-type": content_type}
            if accept:
                headers["accept"] = accept
            try:
                response = self._t.http.post(
                    f"/endpoints/{quote(name, safe='')}/invocations", content=data, headers=headers
                )
            except httpx.TransportError as exc:
                raise ServiceUnavailable(f"cannot reach modelyard at {self._t.url}: {exc}") from exc
            answer = Invocation(response.status_code, dict(response.headers), response.content)
            if answer.variant is None and response.status_code >= 400:
                answer.raise_for_status()  # the router's own error, not a model's
            return answer
        raise TypeError(f"cannot invoke endpoints through {type(self._t).__name__}")

    def _invoke_embedded(
        self, name: str, data: bytes, content_type: str, accept: str | None
    ) -> Invocation:
        assert isinstance(self._t, EmbeddedTransport)
        # The in-process data plane: imported only by an embedded client that invokes.
        from modelyard.core.ids import new_id
        from modelyard.endpoints.invoke import INVOKE
        from modelyard.endpoints.plane import plane_for

        self._ensure_controller()
        runtime = self._t.runtime
        request_id = new_id("req")
        runtime.authorize(INVOKE, self._t.principal, origin="embedded", request_id=request_id)
        router = plane_for(runtime).router
        try:
            answer = router.invoke_sync(
                name, data, content_type=content_type, accept=accept, request_id=request_id
            )
        except ServiceUnavailable:
            if not self._await_starting_replica(name):
                raise
            router.invalidate(name)  # its cached table is the one without a ready replica
            answer = router.invoke_sync(
                name, data, content_type=content_type, accept=accept, request_id=request_id
            )
        return Invocation(
            answer.status, {**answer.headers, "x-request-id": request_id}, answer.body
        )

    def _await_starting_replica(self, name: str, timeout: float = 120.0) -> bool:
        """Embedded, no replica ready: wait up to ``timeout`` for one that is starting
        (this client's controller starts them again after the control plane that ran them
        closed, e.g. the CLI process that created the endpoint). True once one is ready;
        False when none is starting or the time is up (the router's 503 then stands)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {r.state for r in self.describe(name).replicas}
            if "Ready" in states:
                return True
            if not {"Pending", "Starting"} & states:
                return False
            time.sleep(0.1)
        return False

    def predict(self, name: str, data: Any, *, body_format: str = "instances") -> Any:
        """Rows in (a list of rows, a NumPy array, a pandas DataFrame), predictions out.

        The rows are sent as JSON: ``{"instances": rows}`` (``body_format="instances"``,
        what SageMaker's predictors send and its handlers read) or the bare list
        (``body_format="list"``). A DataFrame's rows are objects keyed by column name.
        """
        if body_format not in BODY_FORMATS:
            raise InvalidInput(
                f"body_format {body_format!r} is not one of {', '.join(BODY_FORMATS)}"
            )
        if hasattr(data, "to_dict") and hasattr(data, "columns"):
            rows: Any = json.loads(data.to_json(orient="records"))
        elif hasattr(data, "tolist"):
            rows = data.tolist()
        else:
            rows = data
        payload = {"instances": rows} if body_format == "instances" else rows
        answer = self.invoke(name, json.dumps(payload), content_type="application/json")
        answer.raise_for_status()
        return answer.json()

    # -- deploying from the registry -------------------------------------------------------

    def deploy(
        self,
        name: str,
        version: int | str,
        endpoint_name: str,
        *,
        variant: str = "primary",
        replicas: int = 1,
        strategy: Strategy | Mapping[str, Any] | None = None,
        autoscaling: Autoscaling | Mapping[str, Any] | None = None,
        placement: Placement | Mapping[str, Any] | None = None,
    ) -> Endpoint:
        """Deploy model ``name`` ``version`` as ``variant`` of ``endpoint_name``.

        Creates the endpoint if it does not exist; otherwise replaces that variant (the
        other variants stay) and rolls the new version out per ``strategy``.
        ``autoscaling`` (e.g. ``{"min_replicas": 0, "max_replicas": 4,
        "target_in_flight": 4, "idle_seconds": 300}``) scales the variant with its load.
        ``placement`` (e.g. ``{"backend": "ray", "num_cpus": 1}``) runs its replicas as Ray
        actors across the cluster's nodes instead of local processes.
        """
        spec: dict[str, Any] = {
            "name": variant,
            "model": name,
            "version": str(version),
            "replicas": replicas,
        }
        if autoscaling is not None:
            spec["autoscaling"] = (
                autoscaling.model_dump()
                if isinstance(autoscaling, Autoscaling)
                else dict(autoscaling)
            )
        if placement is not None:
            spec["placement"] = (
                placement.model_dump() if isinstance(placement, Placement) else dict(placement)
            )
        try:
            current = self.describe(endpoint_name)
        except NotFound:
            return self.create(endpoint_name, [spec])
        variants: list[dict[str, Any]] = []
        replaced = False
        for v in current.variants:
            if current.traffic.get(v.id, 0) <= 0 and not v.shadow:
                continue
            if v.name == variant:
                if not replaced:
                    keep: dict[str, Any] = {"weight": v.weight}
                    if "autoscaling" not in spec and v.autoscaling is not None:
                        keep["autoscaling"] = v.autoscaling.model_dump()
                    if "placement" not in spec and v.placement is not None:
                        keep["placement"] = v.placement.model_dump()
                    variants.append({**spec, **keep})
                    replaced = True
                continue
            variants.append(
                {
                    "name": v.name,
                    "model": v.model,
                    "version": str(v.version),
                    "weight": v.weight,
                    # An autoscaled variant may be at zero; the autoscaler starts from one.
                    "replicas": max(v.replicas, 1),
                    "shadow": v.shadow,
                    "autoscaling": v.autoscaling.model_dump() if v.autoscaling else None,
                    "placement": v.placement.model_dump() if v.placement else None,
                }
            )
        if not replaced:
            variants.append(spec)
        return self.update(endpoint_name, variants, strategy=strategy)
