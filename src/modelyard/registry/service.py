"""Operations of the model registry: groups, versions, approval, aliases, history.

Rules (docs/registry.md explains them for users):

* Version numbers run 1..n per group without gaps, also under concurrent registration:
  every change to a group locks its row first (``SELECT ... FOR UPDATE`` on PostgreSQL;
  a SQLite write transaction holds the database lock), and registering increments the
  group's counter in the transaction that inserts the version.
* Status: ``PendingManualApproval -> Approved | Rejected``, ``Approved -> Rejected``
  (revocation) and ``Rejected -> Approved`` (re-approval after review). Rejecting needs a
  reason. Repeating the current status changes nothing. Nothing goes back to pending.
* The ``production`` alias may only point at an Approved version, and an Approved
  version that ``production`` points at cannot be rejected until the alias moves. Other
  aliases may point at any version.
* Every registration, status change and alias change appends one row to the history
  and emits one event, in the same transaction as the change.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.core import lineage
from modelyard.core.db import utcnow
from modelyard.core.ids import new_id
from modelyard.core.operations import Context, OperationSet
from modelyard.errors import AlreadyExists, Conflict, InvalidInput, NotFound, PermissionDenied
from modelyard.flavors._content import Content, content_flavor, runs_user_code
from modelyard.jobs import service as jobs_service
from modelyard.jobs.schemas import GetJob
from modelyard.registry.packaging import package_handler
from modelyard.registry.schemas import (
    LATEST,
    PRODUCTION,
    Alias,
    ApproveVersion,
    CreateModel,
    DeleteAlias,
    GetHistory,
    GetModel,
    GetVersion,
    History,
    HistoryEntry,
    ListModels,
    ListVersions,
    Model,
    ModelCard,
    ModelList,
    ModelVersion,
    RegisterVersion,
    RejectVersion,
    SetAlias,
    Signature,
    Status,
    VersionList,
)
from modelyard.registry.store import HistoryRow, ModelAliasRow, ModelGroupRow, ModelVersionRow
from modelyard.tracking import service as tracking_service
from modelyard.tracking.schemas import GetRun

ops = OperationSet("models")

PENDING: Status = "PendingManualApproval"
APPROVED: Status = "Approved"
REJECTED: Status = "Rejected"
# Allowed status changes (from -> to).
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({APPROVED, REJECTED}),
    APPROVED: frozenset({REJECTED}),
    REJECTED: frozenset({APPROVED}),
}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- reading ---------------------------------------------------------------------------


def _group_row(session: Session, name: str, *, lock: bool = False) -> ModelGroupRow:
    stmt = select(ModelGroupRow).where(ModelGroupRow.name == name)
    if lock:
        # populate_existing: the counter must be re-read under the lock, not taken from
        # an object this session loaded earlier.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = session.scalars(stmt).first()
    if row is None:
        raise NotFound(f"model {name!r} does not exist")
    return row


def _aliases_by_version(session: Session, group_id: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for alias, version_id in session.execute(
        select(ModelAliasRow.alias, ModelAliasRow.version_id)
        .where(ModelAliasRow.group_id == group_id)
        .order_by(ModelAliasRow.alias)
    ).tuples():
        found.setdefault(version_id, []).append(alias)
    return found


def _models_out(session: Session, rows: Sequence[ModelGroupRow]) -> list[Model]:
    """Groups with their aliases (one query for all of them)."""
    aliases: dict[str, dict[str, int]] = {r.id: {} for r in rows}
    if rows:
        for group_id, alias, version in session.execute(
            select(ModelAliasRow.group_id, ModelAliasRow.alias, ModelVersionRow.version)
            .join(ModelVersionRow, ModelVersionRow.id == ModelAliasRow.version_id)
            .where(ModelAliasRow.group_id.in_(list(aliases)))
            .order_by(ModelAliasRow.alias)
        ).tuples():
            aliases[group_id][alias] = version
    return [
        Model(
            id=row.id,
            name=row.name,
            description=row.description,
            tags=dict(row.tags or {}),
            latest_version=row.version_count,
            aliases=aliases[row.id],
            created_at=row.created_at,
            created_by=row.created_by,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


def _version_out(group: ModelGroupRow, row: ModelVersionRow, aliases: list[str]) -> ModelVersion:
    return ModelVersion(
        id=row.id,
        name=group.name,
        version=row.version,
        artifact_digest=row.artifact_digest,
        artifact_size=row.artifact_size,
        artifact_filename=row.artifact_filename,
        flavor=row.flavor,
        runs_user_code=runs_user_code(row.flavor),
        flavor_metadata=dict(row.flavor_metadata or {}),
        signature=Signature.model_validate(row.signature or {}),
        metrics=dict(row.metrics or {}),
        card=ModelCard.model_validate(row.card or {}),
        source_run_id=row.source_run_id,
        source_job_id=row.source_job_id,
        description=row.description,
        tags=dict(row.tags or {}),
        status=row.status,
        status_reason=row.status_reason,
        status_by=row.status_by,
        status_at=row.status_at,
        aliases=sorted(aliases),
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _version_row(session: Session, group: ModelGroupRow, ref: str | int) -> ModelVersionRow:
    """A version by number, by alias, or ``latest``; NotFound names what was looked for."""
    stmt = select(ModelVersionRow).where(ModelVersionRow.group_id == group.id)
    if isinstance(ref, int) or ref.isdigit():
        stmt = stmt.where(ModelVersionRow.version == int(ref))
        what = f"version {int(ref)}"
    elif ref == LATEST:
        stmt = stmt.order_by(ModelVersionRow.version.desc()).limit(1)
        what = "versions yet"
    else:
        stmt = stmt.join(ModelAliasRow, ModelAliasRow.version_id == ModelVersionRow.id).where(
            ModelAliasRow.alias == ref
        )
        what = f"alias {ref!r}"
    row = session.scalars(stmt).first()
    if row is None:
        raise NotFound(f"model {group.name!r} has no {what}")
    return row


def _history(
    session: Session,
    group: ModelGroupRow,
    *,
    version: int | None,
    kind: str,
    actor: str,
    old: str | None = None,
    new: str | None = None,
    alias: str | None = None,
    reason: str = "",
) -> None:
    session.add(
        HistoryRow(
            group_id=group.id,
            version=version,
            kind=kind,
            alias=alias,
            old_value=old,
            new_value=new,
            actor=actor,
            reason=reason,
            time=utcnow(),
        )
    )


# --- groups ----------------------------------------------------------------------------


def _insert_group(
    session: Session, name: str, description: str, tags: dict[str, str], user: str
) -> ModelGroupRow:
    now = utcnow()
    row = ModelGroupRow(
        id=new_id("mdl"),
        name=name,
        description=description,
        tags=tags,
        version_count=0,
        created_at=now,
        created_by=user,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"model {name!r} already exists") from exc
    return row


@ops.operation("POST", "/models", permission="models.write")
def create_model(ctx: Context, req: CreateModel) -> Model:
    """Create a model group (names are unique); registering a version also creates one."""
    ctx.audit_target = f"model:{req.name}"
    session = ctx.session
    if session.scalars(select(ModelGroupRow.id).where(ModelGroupRow.name == req.name)).first():
        raise AlreadyExists(f"model {req.name!r} already exists")
    row = _insert_group(session, req.name, req.description, dict(req.tags), ctx.principal.user)
    ctx.emit("model.created", {"name": row.name, "actor": ctx.principal.user})
    return _models_out(session, [row])[0]


@ops.operation("GET", "/models", permission="models.read")
def list_models(ctx: Context, req: ListModels) -> ModelList:
    """List model groups by name, optionally those starting with ``prefix``."""
    session = ctx.session
    where = []
    if req.prefix:
        where.append(ModelGroupRow.name.like(_escape_like(req.prefix) + "%", escape="\\"))
    total = session.scalar(select(func.count()).select_from(ModelGroupRow).where(*where)) or 0
    rows = session.scalars(
        select(ModelGroupRow)
        .where(*where)
        .order_by(ModelGroupRow.name)
        .limit(req.limit)
        .offset(req.offset)
    ).all()
    return ModelList(models=_models_out(session, rows), total=total)


@ops.operation("GET", "/models/{name}", permission="models.read")
def get_model(ctx: Context, req: GetModel) -> Model:
    """Describe a model group: its latest version number and its aliases."""
    session = ctx.session
    return _models_out(session, [_group_row(session, req.name)])[0]


# --- versions --------------------------------------------------------------------------


def _check_sources(ctx: Context, req: RegisterVersion) -> tuple[str | None, str | None]:
    """Check the run and job the version came from; their lineage labels."""
    run_label = job_label = None
    if req.source_run_id is not None:
        if not ctx.principal.can("tracking.read"):
            raise PermissionDenied(f"{ctx.principal.user!r} may not read runs")
        try:
            run = tracking_service.get_run(ctx, GetRun(run_id=req.source_run_id))
        except NotFound as exc:
            raise InvalidInput(f"source run {req.source_run_id!r} does not exist") from exc
        run_label = f"run {run.name or run.id}"
    if req.source_job_id is not None:
        if not ctx.principal.can("jobs.read"):
            raise PermissionDenied(f"{ctx.principal.user!r} may not read jobs")
        try:
            job = jobs_service.describe(ctx, GetJob(job_id=req.source_job_id))
        except NotFound as exc:
            raise InvalidInput(f"source job {req.source_job_id!r} does not exist") from exc
        job_label = f"job {job.name}"
    return run_label, job_label


def _flavor(ctx: Context, req: RegisterVersion, digest: str, filename: str) -> str:
    """The version's flavor: what its content (``digest``) says, as the model server
    would load it, or the declared one when the content names none. A declared flavor
    that disagrees with the content is refused: the label is what a person approves and
    deploys."""
    content = Content(None, f"the single file {filename!r}")
    # Folder archives are extracted and loaded by what is inside them; a named single
    # file only when it is a .tar.gz (a batch transform extracts those).
    if not filename or filename.endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory(prefix="modelyard-register-") as tmp:
            local = Path(tmp) / "artifact"
            ctx.artifacts.get_to_path(digest, local)
            content = content_flavor(local)
    if req.flavor is None:
        if content.flavor is None:
            raise InvalidInput(
                f"flavor is required: nothing in the model names one ({content.evidence}); "
                "give e.g. sklearn, xgboost, lightgbm, onnx, torchscript, python, "
                "builtin:<algorithm>"
            )
        return content.flavor
    if content.flavor is not None and req.flavor != content.flavor:
        runs = " and runs its Python code when a replica loads it" if content.runs_user_code else ""
        raise InvalidInput(
            f"flavor {req.flavor!r} does not match the model: {content.evidence}, so it is "
            f"flavor {content.flavor!r}{runs}; register it as {content.flavor!r} (or leave "
            "the flavor out)"
        )
    return req.flavor


@ops.operation("POST", "/models/{name}/versions", permission="models.write")
def register_version(ctx: Context, req: RegisterVersion) -> ModelVersion:
    """Register the next version of a model (created if needed), pending approval."""
    ctx.audit_target = f"model:{req.name}"
    if not ctx.artifacts.exists(req.artifact_digest):
        raise InvalidInput(
            f"artifact {req.artifact_digest} was never uploaded: upload the model first "
            "(client.artifacts.upload, or client.models.register(path=...))"
        )
    digest, filename = req.artifact_digest, req.artifact_filename
    flavor_metadata = dict(req.flavor_metadata)
    if req.entry_point is not None:
        if req.source_digest is None:
            raise InvalidInput(
                "entry_point needs source_digest, a .tar.gz of the handler's folder uploaded "
                "first (client.models.register(entry_point=..., source_dir=...) uploads it)"
            )
        packaged = package_handler(
            ctx.artifacts,
            model_digest=digest,
            model_filename=filename,
            entry_point=req.entry_point,
            source_digest=req.source_digest,
        )
        flavor_metadata["packaged"] = {
            "entry_point": req.entry_point,
            "model_artifact": digest,
            "source_artifact": req.source_digest,
        }
        digest, filename = packaged.digest, ""
    elif req.source_digest is not None:
        raise InvalidInput("source_digest is the handler's folder: give entry_point with it")
    size = ctx.artifacts.stat(digest).size
    flavor = _flavor(ctx, req, digest, filename)
    run_label, job_label = _check_sources(ctx, req)
    session = ctx.session
    user = ctx.principal.user
    if not session.scalars(select(ModelGroupRow.id).where(ModelGroupRow.name == req.name)).first():
        # Created concurrently (AlreadyExists): register into that one.
        with contextlib.suppress(AlreadyExists):
            _insert_group(session, req.name, "", {}, user)
    group = _group_row(session, req.name, lock=True)
    number = group.version_count + 1
    now = utcnow()
    group.version_count = number
    group.updated_at = now
    row = ModelVersionRow(
        id=new_id("mv"),
        group_id=group.id,
        version=number,
        artifact_digest=digest,
        artifact_size=size,
        artifact_filename=filename,
        flavor=flavor,
        flavor_metadata=flavor_metadata,
        signature=req.signature.model_dump(mode="json"),
        metrics=dict(req.metrics),
        card=req.card.model_dump(mode="json"),
        source_run_id=req.source_run_id,
        source_job_id=req.source_job_id,
        description=req.description,
        tags=dict(req.tags),
        status=PENDING,
        status_reason="",
        status_by=None,
        status_at=None,
        created_at=now,
        created_by=user,
    )
    session.add(row)
    session.flush()
    _history(session, group, version=number, kind="registered", new=PENDING, actor=user)

    label = f"{group.name} v{number}"
    node = lineage.Node("model_version", row.id, label)
    # The stored artifact, and for a packaged handler the model and code it was made of.
    for packed in dict.fromkeys([digest, req.artifact_digest, req.source_digest]):
        if packed is not None:
            lineage.record(
                session,
                lineage.Node("artifact", packed, f"sha256:{packed[:12]}"),
                node,
                "packages",
                actor=user,
            )
    if req.source_run_id is not None and run_label is not None:
        lineage.record(
            session, lineage.Node("run", req.source_run_id, run_label), node, "produced", actor=user
        )
    if req.source_job_id is not None and job_label is not None:
        lineage.record(
            session, lineage.Node("job", req.source_job_id, job_label), node, "produced", actor=user
        )
    ctx.audit_target = f"model_version:{group.name}:{number}"
    ctx.emit(
        "model_version.registered",
        {
            "name": group.name,
            "version": number,
            "version_id": row.id,
            "artifact_digest": row.artifact_digest,
            "flavor": row.flavor,
            "status": PENDING,
            "actor": user,
        },
    )
    return _version_out(group, row, [])


@ops.operation("GET", "/models/{name}/versions", permission="models.read")
def list_versions(ctx: Context, req: ListVersions) -> VersionList:
    """A model's versions, newest first, optionally only those with one status."""
    session = ctx.session
    group = _group_row(session, req.name)
    where = [ModelVersionRow.group_id == group.id]
    if req.status is not None:
        where.append(ModelVersionRow.status == req.status)
    total = session.scalar(select(func.count()).select_from(ModelVersionRow).where(*where)) or 0
    rows = session.scalars(
        select(ModelVersionRow)
        .where(*where)
        .order_by(ModelVersionRow.version.desc())
        .limit(req.limit)
        .offset(req.offset)
    ).all()
    aliases = _aliases_by_version(session, group.id)
    return VersionList(
        versions=[_version_out(group, r, aliases.get(r.id, [])) for r in rows], total=total
    )


@ops.operation("GET", "/models/{name}/versions/{version}", permission="models.read")
def get_version(ctx: Context, req: GetVersion) -> ModelVersion:
    """One version, by number, by alias (``production``) or ``latest``."""
    session = ctx.session
    group = _group_row(session, req.name)
    row = _version_row(session, group, req.version)
    return _version_out(group, row, _aliases_by_version(session, group.id).get(row.id, []))


def _set_status(ctx: Context, name: str, version: int, status: Status, reason: str) -> ModelVersion:
    ctx.audit_target = f"model_version:{name}:{version}"
    session = ctx.session
    user = ctx.principal.user
    group = _group_row(session, name, lock=True)
    row = _version_row(session, group, version)
    aliases = _aliases_by_version(session, group.id).get(row.id, [])
    if row.status == status:
        return _version_out(group, row, aliases)
    if status not in TRANSITIONS[row.status]:
        raise Conflict(
            f"{name} version {version} is {row.status}; it can become "
            f"{' or '.join(sorted(TRANSITIONS[row.status]))}, not {status}"
        )
    if status != APPROVED and PRODUCTION in aliases:
        raise Conflict(
            f"{name} version {version} is the {PRODUCTION!r} alias; move or delete the alias "
            "before revoking its approval"
        )
    old = row.status
    now = utcnow()
    row.status, row.status_reason, row.status_by, row.status_at = status, reason, user, now
    group.updated_at = now
    session.flush()
    _history(
        session,
        group,
        version=version,
        kind="status",
        old=old,
        new=status,
        actor=user,
        reason=reason,
    )
    ctx.emit(
        "model_version.status_changed",
        {
            "name": name,
            "version": version,
            "version_id": row.id,
            "old": old,
            "new": status,
            "reason": reason,
            "actor": user,
        },
    )
    return _version_out(group, row, aliases)


@ops.operation("POST", "/models/{name}/versions/{version}/approve", permission="models.approve")
def approve_version(ctx: Context, req: ApproveVersion) -> ModelVersion:
    """Approve a version (from pending, or from rejected after a new review)."""
    return _set_status(ctx, req.name, req.version, APPROVED, req.reason)


@ops.operation("POST", "/models/{name}/versions/{version}/reject", permission="models.approve")
def reject_version(ctx: Context, req: RejectVersion) -> ModelVersion:
    """Reject a pending version or revoke an approval; a reason is required."""
    return _set_status(ctx, req.name, req.version, REJECTED, req.reason.strip())


# --- aliases ---------------------------------------------------------------------------


@ops.operation(
    "PUT",
    "/models/{name}/aliases/{alias}",
    permission="models.write",
    stricter={"alias": {PRODUCTION: "models.deploy"}},
)
def set_alias(ctx: Context, req: SetAlias) -> Alias:
    """Point an alias at a version, creating or moving it atomically."""
    ctx.audit_target = f"model_alias:{req.name}:{req.alias}"
    if req.alias == LATEST:
        raise InvalidInput(f"{LATEST!r} always means the highest version; it cannot be an alias")
    session = ctx.session
    user = ctx.principal.user
    group = _group_row(session, req.name, lock=True)
    target = _version_row(session, group, req.version)
    if req.alias == PRODUCTION and target.status != APPROVED:
        raise Conflict(
            f"{PRODUCTION!r} may only point at an Approved version; {req.name} version "
            f"{req.version} is {target.status} (approve it first)"
        )
    current = session.scalars(
        select(ModelAliasRow).where(
            ModelAliasRow.group_id == group.id, ModelAliasRow.alias == req.alias
        )
    ).first()
    previous: int | None = None
    now = utcnow()
    if current is None:
        current = ModelAliasRow(
            group_id=group.id,
            alias=req.alias,
            version_id=target.id,
            updated_at=now,
            updated_by=user,
        )
        session.add(current)
    else:
        previous = session.scalar(
            select(ModelVersionRow.version).where(ModelVersionRow.id == current.version_id)
        )
        if current.version_id == target.id:
            return Alias(
                name=group.name,
                alias=req.alias,
                version=req.version,
                previous_version=previous,
                updated_at=current.updated_at,
                updated_by=current.updated_by,
            )
        current.version_id, current.updated_at, current.updated_by = target.id, now, user
    group.updated_at = now
    session.flush()
    _history(
        session,
        group,
        version=req.version,
        kind="alias",
        alias=req.alias,
        old=None if previous is None else str(previous),
        new=str(req.version),
        actor=user,
    )
    ctx.emit(
        "model_alias.moved",
        {
            "name": group.name,
            "alias": req.alias,
            "version": req.version,
            "version_id": target.id,
            "old": previous,
            "new": req.version,
            "actor": user,
        },
    )
    return Alias(
        name=group.name,
        alias=req.alias,
        version=req.version,
        previous_version=previous,
        updated_at=now,
        updated_by=user,
    )


@ops.operation(
    "DELETE",
    "/models/{name}/aliases/{alias}",
    permission="models.write",
    stricter={"alias": {PRODUCTION: "models.deploy"}},
)
def delete_alias(ctx: Context, req: DeleteAlias) -> Alias:
    """Remove an alias; the version it pointed at is unchanged."""
    ctx.audit_target = f"model_alias:{req.name}:{req.alias}"
    session = ctx.session
    user = ctx.principal.user
    group = _group_row(session, req.name, lock=True)
    current = session.scalars(
        select(ModelAliasRow).where(
            ModelAliasRow.group_id == group.id, ModelAliasRow.alias == req.alias
        )
    ).first()
    if current is None:
        raise NotFound(f"model {req.name!r} has no alias {req.alias!r}")
    version = session.scalar(
        select(ModelVersionRow.version).where(ModelVersionRow.id == current.version_id)
    )
    assert version is not None  # the foreign key guarantees it
    version_id = current.version_id
    now = utcnow()
    session.delete(current)
    group.updated_at = now
    session.flush()
    _history(
        session,
        group,
        version=version,
        kind="alias",
        alias=req.alias,
        old=str(version),
        new=None,
        actor=user,
    )
    ctx.emit(
        "model_alias.deleted",
        {
            "name": group.name,
            "alias": req.alias,
            "version": version,
            "version_id": version_id,
            "old": version,
            "new": None,
            "actor": user,
        },
    )
    return Alias(
        name=group.name,
        alias=req.alias,
        version=version,
        previous_version=version,
        updated_at=now,
        updated_by=user,
    )


# --- history ---------------------------------------------------------------------------


@ops.operation("GET", "/models/{name}/history", permission="models.read")
def get_history(ctx: Context, req: GetHistory) -> History:
    """Every registration, status change and alias change of a model, oldest first."""
    session = ctx.session
    group = _group_row(session, req.name)
    where = [HistoryRow.group_id == group.id]
    if req.version is not None:
        where.append(HistoryRow.version == req.version)
    total = session.scalar(select(func.count()).select_from(HistoryRow).where(*where)) or 0
    rows = session.scalars(
        select(HistoryRow)
        .where(*where)
        .order_by(HistoryRow.seq)
        .limit(req.limit)
        .offset(req.offset)
    ).all()
    return History(
        entries=[
            HistoryEntry(
                seq=r.seq,
                name=group.name,
                version=r.version,
                kind=r.kind,
                alias=r.alias,
                old=r.old_value,
                new=r.new_value,
                actor=r.actor,
                reason=r.reason,
                time=r.time,
            )
            for r in rows
        ],
        total=total,
    )


__all__ = ["TRANSITIONS", "ops"]
