"""Operations of the datasets domain.

A version is registered from files already uploaded to the artifact store (the SDK does
the upload), so a version is nothing but a list of (path, digest) pairs plus what was
learnt from reading them: the schema, the row count and, usually, the profile. Slow
reads happen before the write transaction opens, so profiling a large dataset does not
hold the metadata store's write lock.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.core.db import utcnow
from modelyard.core.ids import new_id
from modelyard.core.operations import Context, OperationSet, Progress
from modelyard.core.paths import safe_relpath
from modelyard.data import diff as diffing
from modelyard.data import formats, profiling, quality
from modelyard.data.formats import DataSource
from modelyard.data.schemas import (
    CheckVersion,
    Dataset,
    DatasetDetail,
    DatasetDiff,
    DatasetList,
    DatasetProfile,
    DatasetVersion,
    DiffVersions,
    GetDataset,
    GetVersion,
    ListDatasets,
    RegisterVersion,
    ReportList,
    StoredFile,
    StoredReport,
    VersionSummary,
)
from modelyard.data.store import DatasetRow, DatasetVersionRow, QualityReportRow
from modelyard.errors import Conflict, InvalidInput, NotFound

ops = OperationSet("datasets")


def _lock_dataset(session: Session, name: str) -> DatasetRow | None:
    """The dataset row, locked for this transaction (PostgreSQL; SQLite's writers queue)."""
    stmt = select(DatasetRow).where(DatasetRow.name == name).with_for_update()
    return session.scalars(stmt).first()


def _dataset_row(session: Session, name: str) -> DatasetRow:
    row = session.scalars(select(DatasetRow).where(DatasetRow.name == name)).first()
    if row is None:
        raise NotFound(f"dataset {name!r} does not exist")
    return row


def _version_row(session: Session, name: str, version: int) -> DatasetVersionRow:
    dataset = _dataset_row(session, name)
    row = session.scalars(
        select(DatasetVersionRow).where(
            DatasetVersionRow.dataset_id == dataset.id, DatasetVersionRow.version == version
        )
    ).first()
    if row is None:
        raise NotFound(
            f"dataset {name!r} has no version {version} (latest is {dataset.latest_version})"
        )
    return row


def _version_out(name: str, row: DatasetVersionRow) -> DatasetVersion:
    return DatasetVersion(
        id=row.id,
        dataset=name,
        version=row.version,
        format=row.format,
        files=[StoredFile.model_validate(f) for f in row.files],
        size_bytes=row.size_bytes,
        row_count=row.row_count,
        columns=[formats.ColumnSchema.model_validate(c) for c in row.columns],
        profile=DatasetProfile.model_validate(row.profile) if row.profile else None,
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
        header=row.header,
    )


def _source(
    ctx: Context,
    fmt: str,
    files: list[StoredFile],
    *,
    header: bool = True,
    column_names: list[str] | None = None,
) -> DataSource:
    """A readable view of stored files; every object's digest is verified once, first."""
    locations = []
    local = True
    for i, f in enumerate(files):
        ctx.progress(Progress("verifying files", i, len(files)))
        path = ctx.artifacts.local_path(f.digest)  # verifies on the local backend
        if path is None:
            ctx.artifacts.verify(f.digest)
            local = False
        locations.append(str(path) if path is not None else ctx.artifacts.object_location(f.digest))
    filesystem = None if local else ctx.artifacts.filesystem
    return DataSource(
        files=locations,
        format=fmt,  # type: ignore[arg-type]
        filesystem=filesystem,
        header=header,
        column_names=None if column_names is None else tuple(column_names),
    )


def _version_source(ctx: Context, version: DatasetVersion) -> DataSource:
    """The version's files, read as registered (a headerless CSV with its column names)."""
    names = None if version.header else [c.name for c in version.columns]
    return _source(ctx, version.format, version.files, header=version.header, column_names=names)


def _progress(ctx: Context, task: str) -> profiling.ProgressCallback:
    def report(message: str) -> None:
        ctx.progress(Progress(f"{task}: {message}"))

    return report


@ops.operation("POST", "/datasets/{name}/versions", permission="datasets.write")
def register_version(ctx: Context, req: RegisterVersion) -> DatasetVersion:
    """Register a new version of a dataset (created if new) from uploaded files."""
    ctx.audit_target = f"dataset:{req.name}"
    stored: dict[str, StoredFile] = {}
    for f in req.files:
        path = safe_relpath(f.path)
        if path in stored:
            raise InvalidInput(f"file path {path!r} appears twice in the version")
        try:
            size = ctx.artifacts.stat(f.digest).size
        except NotFound:
            raise InvalidInput(f"artifact {f.digest} for {path!r} was never uploaded") from None
        stored[path] = StoredFile(path=path, digest=f.digest, size=size)
    files = [stored[p] for p in sorted(stored)]
    fmt = req.format
    if fmt is None:
        head = b"".join(_head(ctx, files[0].digest))
        fmt = formats.detect_format(files[0].path, head)
    if req.header and req.columns is not None:
        raise InvalidInput(
            "columns name the columns of a CSV without a header row; "
            "with header=true the names come from the header"
        )
    header = req.header if req.header is not None else req.columns is None
    source = _source(ctx, str(fmt), files, header=header, column_names=req.columns)
    if req.header is None:
        looks_like_data = formats.header_looks_like_data(source)
        if looks_like_data is not None:
            shown = ", ".join(looks_like_data[:8]) + (", …" if len(looks_like_data) > 8 else "")
            raise InvalidInput(
                f"the first row of {files[0].path!r} looks like data, not a header "
                f"({shown}): a CSV without a header row is registered with --no-header "
                "(SDK header=False; columns are then named _c0, _c1, … unless --columns "
                "a,b,c names them); if that row is the header, say so with --header "
                "(header=True)",
                details={"first_row": looks_like_data},
            )
    columns = formats.infer_schema(source)
    row_count = formats.count_rows(source)
    profile = (
        profiling.profile(source, progress=_progress(ctx, "profiling")) if req.profile else None
    )

    session = ctx.session  # the write transaction starts here, after the slow reads
    now = utcnow()
    dataset = _lock_dataset(session, req.name)
    if dataset is None:
        try:
            with session.begin_nested():
                session.add(
                    DatasetRow(
                        id=new_id("ds"),
                        name=req.name,
                        description=req.description,
                        created_by=ctx.principal.user,
                        created_at=now,
                        latest_version=0,
                    )
                )
        except IntegrityError:
            pass  # another client created it first; its row is locked below
        dataset = _lock_dataset(session, req.name)
        if dataset is None:  # created and deleted again meanwhile
            raise Conflict(f"dataset {req.name!r} changed during registration; try again")
    dataset.latest_version += 1
    dataset.updated_at = now
    row = DatasetVersionRow(
        id=new_id("dsv"),
        dataset_id=dataset.id,
        version=dataset.latest_version,
        format=fmt,
        files=[f.model_dump() for f in files],
        size_bytes=sum(f.size for f in files),
        row_count=row_count,
        columns=[c.model_dump(mode="json") for c in columns],
        profile=profile.model_dump(mode="json") if profile else None,
        description=req.description,
        created_at=now,
        created_by=ctx.principal.user,
        header=header,
    )
    session.add(row)
    session.flush()
    ctx.audit_target = f"dataset:{req.name}:v{row.version}"
    ctx.emit("dataset.version_registered", {"dataset": req.name, "version": row.version})
    return _version_out(req.name, row)


def _head(ctx: Context, digest: str, limit: int = 64 * 1024) -> list[bytes]:
    chunks: list[bytes] = []
    size = 0
    for chunk in ctx.artifacts.iter_chunks(digest, chunk_size=limit):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return chunks


def _dataset_out(row: DatasetRow) -> Dataset:
    return Dataset(
        name=row.name,
        description=row.description,
        latest_version=row.latest_version,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
    )


@ops.operation("GET", "/datasets", permission="datasets.read")
def list_datasets(ctx: Context, req: ListDatasets) -> DatasetList:
    """List datasets by name, optionally those starting with a prefix."""
    stmt = select(DatasetRow)
    if req.prefix:
        escaped = req.prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(DatasetRow.name.like(f"{escaped}%", escape="\\"))
    total = ctx.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.session.scalars(stmt.order_by(DatasetRow.name).offset(req.offset).limit(req.limit))
    return DatasetList(datasets=[_dataset_out(r) for r in rows], total=total)


@ops.operation("GET", "/datasets/{name}", permission="datasets.read")
def get_dataset(ctx: Context, req: GetDataset) -> DatasetDetail:
    """A dataset and a summary of each of its versions."""
    row = _dataset_row(ctx.session, req.name)
    versions = ctx.session.scalars(
        select(DatasetVersionRow)
        .where(DatasetVersionRow.dataset_id == row.id)
        .order_by(DatasetVersionRow.version)
    )
    summaries = [
        VersionSummary(
            version=v.version,
            format=v.format,
            row_count=v.row_count,
            size_bytes=v.size_bytes,
            column_count=len(v.columns),
            created_at=v.created_at,
            created_by=v.created_by,
        )
        for v in versions
    ]
    return DatasetDetail(**_dataset_out(row).model_dump(), versions=summaries)


@ops.operation("GET", "/datasets/{name}/versions/{version}", permission="datasets.read")
def get_version(ctx: Context, req: GetVersion) -> DatasetVersion:
    """One version: its files, schema, row count and profile."""
    return _version_out(req.name, _version_row(ctx.session, req.name, req.version))


def _load_version(ctx: Context, name: str, version: int) -> DatasetVersion:
    with ctx.read() as session:
        return _version_out(name, _version_row(session, name, version))


@ops.operation("POST", "/datasets/{name}/versions/{version}/profile", permission="datasets.write")
def profile_version(ctx: Context, req: GetVersion) -> DatasetProfile:
    """(Re)compute a version's profile and store it."""
    ctx.audit_target = f"dataset:{req.name}:v{req.version}"
    version = _load_version(ctx, req.name, req.version)
    result = profiling.profile(_version_source(ctx, version), progress=_progress(ctx, "profiling"))
    row = ctx.session.get(DatasetVersionRow, version.id)
    if row is None:
        raise NotFound(f"dataset {req.name!r} version {req.version} was deleted meanwhile")
    row.profile = result.model_dump(mode="json")
    return result


@ops.operation("GET", "/datasets/{name}/diff", permission="datasets.read")
def diff_versions(ctx: Context, req: DiffVersions) -> DatasetDiff:
    """Schema changes, row-count change and per-column distribution shift between versions."""
    base = _load_version(ctx, req.name, req.base)
    other = _load_version(ctx, req.name, req.other)
    return diffing.diff(
        _version_source(ctx, base),
        _version_source(ctx, other),
        profile_a=base.profile,
        profile_b=other.profile,
    )


def _report_out(name: str, version: int, row: QualityReportRow) -> StoredReport:
    return StoredReport(
        id=row.id,
        dataset=name,
        version=version,
        passed=row.passed,
        report=quality.QualityReport.model_validate(row.report),
        created_at=row.created_at,
        created_by=row.created_by,
    )


@ops.operation("POST", "/datasets/{name}/versions/{version}/checks", permission="datasets.write")
def check_version(ctx: Context, req: CheckVersion) -> StoredReport:
    """Run data-quality rules against a version and store the report."""
    ctx.audit_target = f"dataset:{req.name}:v{req.version}"
    version = _load_version(ctx, req.name, req.version)
    report = quality.run_checks(_version_source(ctx, version), req.rules)
    row = QualityReportRow(
        id=new_id("dqr"),
        version_id=version.id,
        passed=report.passed,
        report=report.model_dump(mode="json"),
        created_at=utcnow(),
        created_by=ctx.principal.user,
    )
    ctx.session.add(row)
    ctx.emit(
        "dataset.quality_checked",
        {"dataset": req.name, "version": req.version, "report": row.id, "passed": row.passed},
    )
    return _report_out(req.name, req.version, row)


@ops.operation("GET", "/datasets/{name}/versions/{version}/checks", permission="datasets.read")
def list_reports(ctx: Context, req: GetVersion) -> ReportList:
    """Quality reports of a version, newest first."""
    version = _version_row(ctx.session, req.name, req.version)
    rows = ctx.session.scalars(
        select(QualityReportRow)
        .where(QualityReportRow.version_id == version.id)
        .order_by(QualityReportRow.created_at.desc(), QualityReportRow.id.desc())
    )
    return ReportList(reports=[_report_out(req.name, req.version, r) for r in rows])
