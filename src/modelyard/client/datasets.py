"""SDK wrapper for datasets: turns files, folders and data frames into uploads + operations."""

from __future__ import annotations

import builtins
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.client.artifacts import ArtifactsAPI
from modelyard.client.progress import task_progress, transfer_progress
from modelyard.client.transport import Transport
from modelyard.core.idempotency import new_key
from modelyard.core.operations import Progress
from modelyard.core.paths import collect_files, safe_join
from modelyard.data.formats import DataSource, open_dataset
from modelyard.data.schemas import (
    CheckVersion,
    DatasetDetail,
    DatasetDiff,
    DatasetFile,
    DatasetList,
    DatasetProfile,
    DatasetVersion,
    DiffVersions,
    Format,
    GetDataset,
    GetVersion,
    ListDatasets,
    RegisterVersion,
    ReportList,
    Rule,
    StoredReport,
)
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

# A path, a pyarrow Table, or a pandas/polars DataFrame (typed Any: both are optional).
Source = Any


def _as_arrow(data: Any) -> pa.Table | None:
    if isinstance(data, (str, os.PathLike)):
        return None  # a path: pyarrow is not needed (nor imported) to upload files
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    module = type(data).__module__.split(".", 1)[0]
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if module == "polars":
        return data.to_arrow()
    return None


class DatasetsAPI:
    def __init__(self, transport: Transport, artifacts: ArtifactsAPI) -> None:
        self._t = transport
        self._artifacts = artifacts

    def register(
        self,
        name: str,
        source: Source,
        *,
        format: Format | None = None,
        description: str = "",
        profile: bool = True,
        header: bool | None = None,
        columns: builtins.list[str] | None = None,
        show_progress: bool | None = None,
    ) -> DatasetVersion:
        """Register a new version of ``name`` from a file, a folder, or an in-memory table.

        Files are uploaded to the artifact store first (content-addressed, so unchanged
        files are not stored twice, and stored byte for byte: a job's channel gets them as
        uploaded); a pandas/polars DataFrame or Arrow table is written as Parquet. The
        format is detected when not given.

        CSV: ``header=False`` says the files have no header row; their columns are named
        ``columns``, or ``_c0, _c1, …``. Unset, the first row is the header unless it looks
        like data (then :class:`~modelyard.errors.InvalidInput` names ``header=False``);
        ``header=True`` takes it as the header regardless.
        """
        table = _as_arrow(source)
        with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
            if table is not None:
                import pyarrow.parquet as pq

                path = Path(tmp) / "data.parquet"
                pq.write_table(table, path)
                entries = [("data.parquet", path)]
                format = format or "parquet"
            elif isinstance(source, (str, os.PathLike)):
                path = Path(source)
                if path.is_dir():
                    entries = collect_files(path)
                elif path.is_file():
                    entries = [(path.name, path)]
                else:
                    raise InvalidInput(f"{str(path)!r} is neither a file nor a folder")
                if not entries:
                    raise InvalidInput(f"folder {str(path)!r} holds no files")
            else:
                raise InvalidInput(
                    f"cannot register a {type(source).__name__}: pass a path, a pandas or "
                    "polars DataFrame, or a pyarrow Table"
                )
            files = []
            total = sum(p.stat().st_size for _, p in entries)
            with transfer_progress(f"uploading {name}", total, show_progress) as report:
                done = 0
                for rel, p in entries:
                    ref = self._artifacts.upload(p)
                    files.append(DatasetFile(path=rel, digest=ref.digest))
                    done += ref.size
                    report(Progress("uploading", done, total))
        req = RegisterVersion(
            name=name,
            files=files,
            format=format,
            description=description,
            profile=profile,
            header=header,
            columns=columns,
            idempotency_key=new_key(),  # the transport may resend it after a lost response
        )
        with task_progress(f"registering {name}", show_progress) as progress:
            result: DatasetVersion = self._t.call(
                "datasets.register_version", req, progress=progress
            )
        return result

    def list(self, prefix: str | None = None, *, limit: int = 100, offset: int = 0) -> DatasetList:
        result: DatasetList = self._t.call(
            "datasets.list_datasets", ListDatasets(prefix=prefix, limit=limit, offset=offset)
        )
        return result

    def get(self, name: str) -> DatasetDetail:
        result: DatasetDetail = self._t.call("datasets.get_dataset", GetDataset(name=name))
        return result

    def _resolve(self, name: str, version: int | None) -> int:
        return version if version is not None else self.get(name).latest_version

    def version(self, name: str, version: int | None = None) -> DatasetVersion:
        """A version (the latest when ``version`` is None)."""
        result: DatasetVersion = self._t.call(
            "datasets.get_version", GetVersion(name=name, version=self._resolve(name, version))
        )
        return result

    def profile(
        self, name: str, version: int | None = None, *, show_progress: bool | None = None
    ) -> DatasetProfile:
        """Compute (again) and store the profile of a version."""
        req = GetVersion(name=name, version=self._resolve(name, version))
        with task_progress(f"profiling {name} v{req.version}", show_progress) as progress:
            result: DatasetProfile = self._t.call(
                "datasets.profile_version", req, progress=progress
            )
        return result

    def diff(self, name: str, base: int, other: int) -> DatasetDiff:
        result: DatasetDiff = self._t.call(
            "datasets.diff_versions", DiffVersions(name=name, base=base, other=other)
        )
        return result

    def check(
        self,
        name: str,
        rules: builtins.list[Rule] | builtins.list[dict[str, Any]],
        version: int | None = None,
    ) -> StoredReport:
        """Run data-quality rules; ``report.raise_if_failed()`` gates a later step on it."""
        req = CheckVersion.model_validate(
            {"name": name, "version": self._resolve(name, version), "rules": rules}
        )
        result: StoredReport = self._t.call("datasets.check_version", req)
        return result

    def reports(self, name: str, version: int | None = None) -> ReportList:
        result: ReportList = self._t.call(
            "datasets.list_reports", GetVersion(name=name, version=self._resolve(name, version))
        )
        return result

    def download(self, name: str, dest: str | os.PathLike[str], version: int | None = None) -> Path:
        """Write a version's files under ``dest`` (which must not escape it), verified."""
        v = self.version(name, version)
        root = Path(dest)
        root.mkdir(parents=True, exist_ok=True)
        for f in v.files:
            self._artifacts.download(f.digest, safe_join(root, f.path))
        return root

    def to_arrow(self, name: str, version: int | None = None) -> pa.Table:
        """Load a version into memory as an Arrow table."""
        v = self.version(name, version)
        with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
            self.download(name, tmp, v.version)
            files = [str(safe_join(Path(tmp), f.path)) for f in v.files]
            names = None if v.header else tuple(c.name for c in v.columns)
            source = DataSource(files=files, format=v.format, header=v.header, column_names=names)
            return open_dataset(source).to_table()
