"""Operations of the endpoints domain: create, update (rollouts), describe, delete.

Rules (docs/serving.md, "Endpoints", explains them for users):

* A variant pins one model version (a number, an alias or ``latest`` is resolved when
  the endpoint is created or updated). Only an ``Approved`` version may take traffic;
  a shadow variant may run any version.
* An update whose variants deploy no new model version (weights, replica counts,
  removing a variant) is applied at once. Otherwise it starts a rollout: the new
  variants' replicas start beside the old ones and the controller shifts traffic per
  the strategy, baking and evaluating alarms after each step. One rollout at a time;
  an endpoint that is still being created, updated or deleted refuses updates.
* Every operation only writes rows; the endpoints controller does the work. Invoking
  is not an operation: see :mod:`modelyard.endpoints.invoke`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard.core import lineage
from modelyard.core.db import utcnow
from modelyard.core.ids import new_id
from modelyard.core.operations import Context, OperationSet
from modelyard.endpoints import rollouts
from modelyard.endpoints.controller import make_controller, notify_after_commit
from modelyard.endpoints.history import record_event
from modelyard.endpoints.invoke import INVOKE
from modelyard.endpoints.plane import dropped_events
from modelyard.endpoints.router import describe_counters, stats_of
from modelyard.endpoints.schemas import (
    Capture,
    CaptureFile,
    CaptureFileList,
    CreateEndpoint,
    DeleteEndpoint,
    Endpoint,
    EndpointEvent,
    EndpointList,
    EventList,
    GetEndpoint,
    ListCapture,
    ListEndpoints,
    ListEvents,
    ListRollouts,
    MetricPut,
    PutMetric,
    Replica,
    Rollout,
    RolloutList,
    Strategy,
    UpdateEndpoint,
    Variant,
    VariantSpec,
    VariantStats,
)
from modelyard.endpoints.states import ROLLOUT, move_endpoint
from modelyard.endpoints.store import (
    CaptureFileRow,
    EndpointEventRow,
    EndpointRow,
    MetricRow,
    ReplicaRow,
    RolloutRow,
)
from modelyard.errors import AlreadyExists, Conflict, NotFound
from modelyard.registry import service as registry_service
from modelyard.registry.schemas import GetVersion

ops = OperationSet("endpoints")
background = (make_controller,)
__all__ = ["INVOKE", "background", "ops"]


# --- reading ---------------------------------------------------------------------------


def _endpoint_row(session: Session, name: str, *, lock: bool = False) -> EndpointRow:
    stmt = select(EndpointRow).where(EndpointRow.name == name)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise NotFound(f"no endpoint named {name!r} (list them with 'modelyard endpoints list')")
    return row


def _rollout_out(row: RolloutRow) -> Rollout:
    return Rollout(
        id=row.id,
        endpoint=row.endpoint,
        strategy=Strategy.model_validate(row.strategy),
        state=row.state,
        phase=row.phase,
        step=row.step,
        steps=list(row.steps),
        from_variants=[Variant.model_validate(v) for v in row.from_variants],
        to_variants=[Variant.model_validate(v) for v in row.to_variants],
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def _endpoint_out(session: Session, row: EndpointRow) -> Endpoint:
    replicas = list(
        session.scalars(
            select(ReplicaRow).where(ReplicaRow.endpoint_id == row.id).order_by(ReplicaRow.id)
        )
    )
    rollout = session.scalar(
        select(RolloutRow)
        .where(RolloutRow.endpoint_id == row.id)
        .order_by(RolloutRow.created_at.desc(), RolloutRow.id.desc())
        .limit(1)
    )
    ids = [v["id"] for v in row.variants]
    stats = {vid: VariantStats(**describe_counters(c)) for vid, c in stats_of(ids).items()}
    return Endpoint(
        id=row.id,
        name=row.name,
        status=row.status,
        message=row.message,
        variants=[Variant.model_validate(v) for v in row.variants],
        traffic=dict(row.traffic),
        capture=Capture.model_validate(row.capture) if row.capture else None,
        replicas=[
            Replica(
                id=r.id,
                variant_id=r.variant_id,
                state=r.state,
                host=r.host,
                port=r.port,
                pid=r.pid,
                restarts=r.restarts,
                message=r.message,
                updated_at=r.updated_at,
            )
            for r in replicas
        ],
        rollout=_rollout_out(rollout) if rollout is not None else None,
        stats=stats,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        port=row.port,
    )


# --- variants ---------------------------------------------------------------------------


def _resolve(ctx: Context, spec: VariantSpec) -> Variant:
    """Pin a variant spec to a model version; only Approved versions take traffic."""
    version = registry_service.get_version(ctx, GetVersion(name=spec.model, version=spec.version))
    if not spec.shadow and version.status != "Approved":
        raise Conflict(
            f"model {spec.model!r} version {version.version} is {version.status}: only an "
            "Approved version may take traffic (approve it, or deploy it as a shadow variant)"
        )
    return Variant(
        id=new_id("var"),
        name=spec.name,
        model=version.name,
        version=version.version,
        model_version_id=version.id,
        artifact_digest=version.artifact_digest,
        artifact_filename=version.artifact_filename,
        flavor=version.flavor,
        weight=spec.weight,
        replicas=spec.autoscaling.clamp(spec.replicas) if spec.autoscaling else spec.replicas,
        shadow=spec.shadow,
        autoscaling=spec.autoscaling,
        placement=spec.placement,
    )


def _lineage(ctx: Context, endpoint: EndpointRow, variants: list[Variant]) -> None:
    node = lineage.Node("endpoint", endpoint.id, f"endpoint {endpoint.name}")
    for v in variants:
        lineage.record(
            ctx.session,
            lineage.Node("model_version", v.model_version_id, f"{v.model} v{v.version}"),
            node,
            "deployed_to",
            actor=ctx.principal.user,
            attrs={"variant": v.name, "shadow": v.shadow},
        )


def _dump(variants: list[Variant]) -> list[dict[str, Any]]:
    return [v.model_dump(mode="json") for v in variants]


# --- operations -------------------------------------------------------------------------


@ops.operation("POST", "/endpoints", permission="endpoints.deploy")
def create_endpoint(ctx: Context, req: CreateEndpoint) -> Endpoint:
    """Create an endpoint; the controller starts its replicas (status Creating -> InService)."""
    session = ctx.session
    if session.scalar(select(EndpointRow.id).where(EndpointRow.name == req.name)) is not None:
        raise AlreadyExists(f"endpoint {req.name!r} already exists: update it, or delete it first")
    variants = [_resolve(ctx, spec) for spec in req.variants]
    row = EndpointRow(
        id=new_id("ep"),
        name=req.name,
        status="Creating",
        message="",
        variants=_dump(variants),
        traffic=rollouts.normalised(_dump(variants)),
        capture=req.capture.model_dump(mode="json") if req.capture else None,
        created_by=ctx.principal.user,
    )
    session.add(row)
    session.flush()
    _lineage(ctx, row, variants)
    record_event(
        session,
        row.name,
        "created",
        "endpoint created",
        actor=ctx.principal.user,
        variants=_dump(variants),
    )
    ctx.audit_target = f"endpoint:{row.name}"
    ctx.emit("endpoint.created", {"endpoint": row.name, "id": row.id})
    notify_after_commit(session, row.name)
    return _endpoint_out(session, row)


@ops.operation("PUT", "/endpoints/{name}", permission="endpoints.deploy")
def update_endpoint(ctx: Context, req: UpdateEndpoint) -> Endpoint:
    """Change an endpoint's variants; a new model version is rolled out per the strategy."""
    session = ctx.session
    row = _endpoint_row(session, req.name, lock=True)
    if row.status in ("Creating", "Updating", "RollingBack", "Deleting"):
        raise Conflict(
            f"endpoint {req.name!r} is {row.status}: wait until it is InService (or Failed) "
            "before updating it"
        )
    current = [Variant.model_validate(v) for v in row.variants]
    target: list[Variant] = []
    new_ids: list[str] = []
    for spec in req.variants:
        resolved = _resolve(ctx, spec)
        same = next(
            (
                c
                for c in current
                if c.name == resolved.name
                and c.model_version_id == resolved.model_version_id
                and c.shadow == resolved.shadow
                and c.placement == resolved.placement
            ),
            None,
        )
        if same is not None:
            resolved = resolved.model_copy(update={"id": same.id})
        else:
            new_ids.append(resolved.id)
        target.append(resolved)
    if req.capture is not None:
        row.capture = req.capture.model_dump(mode="json")
    watched = [v.id for v in target if v.id in new_ids and not v.shadow]
    rollout = RolloutRow(
        id=new_id("ro"),
        endpoint_id=row.id,
        endpoint=row.name,
        strategy=req.strategy.model_dump(mode="json"),
        from_variants=_dump(current),
        to_variants=_dump(target),
        new_variant_ids=watched,
        steps=req.strategy.fractions(),
        created_by=ctx.principal.user,
    )
    if not watched:
        # No new model version takes traffic: weights, replicas and shadows change at once.
        rollout.state, rollout.phase, rollout.finished_at = "Completed", "done", utcnow()
        rollout.reason = "no new model version takes traffic: applied at once"
        row.variants = _dump(target)
        row.traffic = rollouts.normalised(row.variants)
    else:
        rollout.state, rollout.phase = "InProgress", "starting"
        by_id = {v.id: v for v in current}
        by_id.update({v.id: v for v in target})
        row.variants = _dump(list(by_id.values()))
        move_endpoint(row, "Updating")
        row.message = ""
    row.generation += 1
    row.updated_at = utcnow()
    session.add(rollout)
    session.flush()
    _lineage(ctx, row, [v for v in target if v.id in new_ids])
    record_event(
        session,
        row.name,
        "rollout_started" if watched else "updated",
        f"{req.strategy.type} rollout started" if watched else rollout.reason,
        actor=ctx.principal.user,
        rollout=rollout.id,
    )
    ctx.audit_target = f"endpoint:{row.name}"
    ctx.emit("endpoint.updated", {"endpoint": row.name, "rollout": rollout.id})
    notify_after_commit(session, row.name)
    return _endpoint_out(session, row)


@ops.operation("DELETE", "/endpoints/{name}", permission="endpoints.deploy")
def delete_endpoint(ctx: Context, req: DeleteEndpoint) -> Endpoint:
    """Stop every replica and remove the endpoint (its history and capture files stay)."""
    session = ctx.session
    row = _endpoint_row(session, req.name, lock=True)
    if row.status != "Deleting":
        for ro in session.scalars(
            select(RolloutRow).where(
                RolloutRow.endpoint_id == row.id, RolloutRow.state == "InProgress"
            )
        ):
            ROLLOUT.advance(ro, "Failed", what=f"rollout {ro.id}")
            ro.phase, ro.reason = "done", "the endpoint was deleted"
            ro.finished_at = ro.updated_at = utcnow()
        move_endpoint(row, "Deleting")
        row.message = ""
        row.generation += 1
        row.updated_at = utcnow()
        record_event(
            session, row.name, "deleting", "endpoint deletion requested", actor=ctx.principal.user
        )
    ctx.audit_target = f"endpoint:{row.name}"
    ctx.emit("endpoint.deleted", {"endpoint": row.name, "id": row.id})
    notify_after_commit(session, row.name)
    return _endpoint_out(session, row)


@ops.operation("GET", "/endpoints/{name}", permission="endpoints.read")
def get_endpoint(ctx: Context, req: GetEndpoint) -> Endpoint:
    """An endpoint: variants, live traffic, replicas, the latest rollout, router counters."""
    session = ctx.session
    return _endpoint_out(session, _endpoint_row(session, req.name))


@ops.operation("GET", "/endpoints", permission="endpoints.read")
def list_endpoints(ctx: Context, req: ListEndpoints) -> EndpointList:
    """Endpoints by name."""
    session = ctx.session
    total = session.scalar(select(func.count()).select_from(EndpointRow)) or 0
    rows = session.scalars(
        select(EndpointRow).order_by(EndpointRow.name).limit(req.limit).offset(req.offset)
    )
    return EndpointList(endpoints=[_endpoint_out(session, r) for r in rows], total=total)


@ops.operation("GET", "/endpoints/{name}/rollouts", permission="endpoints.read")
def list_rollouts(ctx: Context, req: ListRollouts) -> RolloutList:
    """An endpoint's rollouts, newest first (state, reason of a rollback)."""
    session = ctx.session
    row = _endpoint_row(session, req.name)
    rows = session.scalars(
        select(RolloutRow)
        .where(RolloutRow.endpoint_id == row.id)
        .order_by(RolloutRow.created_at.desc(), RolloutRow.id.desc())
        .limit(req.limit)
    )
    return RolloutList(rollouts=[_rollout_out(r) for r in rows])


@ops.operation("GET", "/endpoints/{name}/events", permission="endpoints.read")
def list_events(ctx: Context, req: ListEvents) -> EventList:
    """An endpoint's history (also of a deleted endpoint of that name), oldest first."""
    rows = ctx.session.scalars(
        select(EndpointEventRow)
        .where(EndpointEventRow.endpoint == req.name, EndpointEventRow.seq > req.after)
        .order_by(EndpointEventRow.seq)
        .limit(req.limit)
    )
    return EventList(
        events=[
            EndpointEvent(
                seq=r.seq,
                endpoint=r.endpoint,
                kind=r.kind,
                message=r.message,
                detail=dict(r.detail),
                time=r.time,
            )
            for r in rows
        ]
    )


@ops.operation("GET", "/endpoints/{name}/capture", permission="endpoints.read")
def list_capture(ctx: Context, req: ListCapture) -> CaptureFileList:
    """Data-capture files of an endpoint (JSON lines in the artifact store), oldest first."""
    session = ctx.session
    where = CaptureFileRow.endpoint == req.name
    total = session.scalar(select(func.count()).select_from(CaptureFileRow).where(where)) or 0
    if total == 0:
        _endpoint_row(session, req.name)  # 404 for an endpoint that never existed
    rows = session.scalars(
        select(CaptureFileRow)
        .where(where)
        .order_by(CaptureFileRow.first_time, CaptureFileRow.id)
        .limit(req.limit)
        .offset(req.offset)
    )
    return CaptureFileList(
        files=[
            CaptureFile(
                id=r.id,
                endpoint=r.endpoint,
                digest=r.digest,
                size=r.size,
                count=r.count,
                first_time=r.first_time,
                last_time=r.last_time,
                created_at=r.created_at,
            )
            for r in rows
        ],
        total=total,
        dropped=dropped_events(),
    )


@ops.operation("POST", "/endpoints/{name}/metrics", permission="endpoints.write")
def put_metric(ctx: Context, req: PutMetric) -> MetricPut:
    """Record a value of a custom metric; ``custom`` alarms of a rollout read it."""
    session = ctx.session
    _endpoint_row(session, req.name)
    row = MetricRow(endpoint=req.name, metric=req.metric, value=req.value, time=utcnow())
    session.add(row)
    session.flush()
    ctx.audit_target = f"endpoint:{req.name}"
    return MetricPut(endpoint=req.name, metric=req.metric, value=req.value, time=row.time)
