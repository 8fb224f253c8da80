"""SDK wrapper for jobs: source snapshots, input conversion, log following.

Thin by design: it turns local things (a source folder, a data file, a ``DatasetVersion``)
into uploads and :class:`~modelyard.jobs.schemas.ChannelInput` values, then calls the
jobs operations. The rules live in ``modelyard.jobs.service``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from modelyard.client.artifacts import ArtifactsAPI
from modelyard.client.transport import EmbeddedTransport, Transport
from modelyard.core.paths import safe_relpath
from modelyard.data.files import DatasetFile
from modelyard.errors import InvalidInput
from modelyard.jobs.schemas import (
    ChannelInput,
    GetJob,
    GetLogs,
    GetMetrics,
    InputMode,
    Job,
    JobFailed,
    JobKind,
    JobList,
    JobMetrics,
    JobState,
    ListJobs,
    LogLine,
    LogMetrics,
    LogPage,
    MetricIn,
    MetricsLogged,
    S3Distribution,
    SubmitJob,
)

# The archive code, the datasets' schemas (with their profile and report models) and rich
# are imported by the calls that use them: listing or describing jobs loads none of them.
if TYPE_CHECKING:
    from modelyard.data.schemas import DatasetVersion

# What fit()/run() accept for one channel (DatasetVersion by name, for the reason above).
InputSource = Union[str, os.PathLike[str], "DatasetVersion", ChannelInput, Mapping[str, Any]]
_DIGEST = re.compile(r"[0-9a-f]{64}")
_DATASET_REF = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,199})(?::(\d+))?")


class JobsAPI:
    def __init__(self, transport: Transport, artifacts: ArtifactsAPI) -> None:
        self._t = transport
        self._artifacts = artifacts

    def _ensure_controller(self) -> None:
        """Embedded: run the jobs controller in this process while the client is open."""
        if isinstance(self._t, EmbeddedTransport):
            self._t.runtime.start_background()

    def _mark(self) -> int | None:
        """Embedded: the in-process job change counter, read before reading a job."""
        if not isinstance(self._t, EmbeddedTransport):
            return None
        from modelyard.jobs.controller import change_generation

        return change_generation()

    @staticmethod
    def _pause(mark: int | None, seconds: float) -> None:
        """Sleep ``seconds`` before polling again; embedded, wake early when a job this
        process's controller runs changes after ``mark`` (a controller in another process
        is not seen: then this is a plain sleep, and the poll finds the change)."""
        if mark is None:
            time.sleep(seconds)
        else:
            from modelyard.jobs.controller import wait_for_change

            wait_for_change(mark, seconds)

    # -- building a submission ----------------------------------------------------------------

    def upload_source(
        self, entry_point: str | os.PathLike[str], source_dir: str | os.PathLike[str] | None = None
    ) -> tuple[str, str]:
        """Snapshot the code as a deterministic .tar.gz and upload it: (entry point, digest).

        With ``source_dir``, the whole folder (without caches, ``.git`` and virtual
        environments) and ``entry_point`` relative to it; without, the one script.
        """
        from modelyard.compute.archive import SOURCE_EXCLUDES, walk, write_tar_gz

        with tempfile.TemporaryDirectory(prefix="modelyard-src-") as tmp:
            archive = Path(tmp) / "source.tar.gz"
            if source_dir is not None:
                root = Path(source_dir)
                if not root.is_dir():
                    raise InvalidInput(f"source_dir {str(root)!r} is not a folder")
                entry = Path(entry_point)
                if entry.is_absolute():
                    try:
                        entry = entry.resolve().relative_to(root.resolve())
                    except ValueError:
                        raise InvalidInput(
                            f"entry point {str(entry_point)!r} is not inside {str(root)!r}"
                        ) from None
                rel = safe_relpath(entry.as_posix())
                if rel not in walk(root, excludes=SOURCE_EXCLUDES):
                    raise InvalidInput(f"entry point {rel!r} is not a file in {str(root)!r}")
                write_tar_gz(root, archive, excludes=SOURCE_EXCLUDES)
            else:
                script = Path(entry_point)
                if not script.is_file():
                    raise InvalidInput(f"entry point {str(script)!r} is not a file")
                rel = safe_relpath(script.name)
                staging = Path(tmp) / "src"
                staging.mkdir()
                shutil.copyfile(script, staging / rel)
                write_tar_gz(staging, archive)
            return rel, self._artifacts.upload(archive).digest

    def channel(
        self,
        name: str,
        source: InputSource,
        mode: InputMode = "File",
        *,
        distribution: S3Distribution = "FullyReplicated",
    ) -> ChannelInput:
        """One input channel from a dataset reference, an artifact digest or local data.

        ``"customers"`` (latest version) or ``"customers:2"``, a ``DatasetVersion``, a
        64-hex artifact digest, a ``Path`` to a local file or folder (uploaded), a
        ``ChannelInput`` or a dict of its fields. ``distribution="ShardedByS3Key"`` gives
        each host of a multi-host job every n-th file by path (a ``ChannelInput`` or dict
        keeps its own).
        """
        if isinstance(source, ChannelInput):
            return source.model_copy(update={"name": name})
        if isinstance(source, Mapping):
            return ChannelInput.model_validate(
                {"mode": mode, "distribution": distribution, **source, "name": name}
            )
        channel = self._channel(name, source, mode)
        return channel.model_copy(update={"distribution": distribution})

    def _channel(
        self, name: str, source: str | os.PathLike[str] | DatasetVersion, mode: InputMode
    ) -> ChannelInput:
        from modelyard.data.schemas import DatasetVersion

        if isinstance(source, DatasetVersion):
            return ChannelInput(
                name=name, dataset=source.dataset, version=source.version, mode=mode
            )
        text = os.fspath(source)
        local = Path(text)
        is_path = not isinstance(source, str) or text.startswith((".", "/", "~")) or os.sep in text
        if is_path:
            return self._local_channel(name, local.expanduser(), mode)
        if _DIGEST.fullmatch(text):
            return ChannelInput(name=name, artifact=text, mode=mode)
        match = _DATASET_REF.fullmatch(text)
        if match is None:
            raise InvalidInput(
                f"input {name!r}: {text!r} is neither 'dataset[:version]', an artifact digest, "
                "nor a path (use pathlib.Path for local files)"
            )
        version = int(match.group(2)) if match.group(2) else None
        return ChannelInput(name=name, dataset=match.group(1), version=version, mode=mode)

    def _local_channel(self, name: str, path: Path, mode: InputMode) -> ChannelInput:
        if path.is_file():
            ref = self._artifacts.upload(path)
            return ChannelInput(name=name, artifact=ref.digest, filename=path.name, mode=mode)
        if not path.is_dir():
            raise InvalidInput(f"input {name!r}: {str(path)!r} is neither a file nor a folder")
        from modelyard.compute.archive import walk

        files = [
            DatasetFile(path=rel, digest=self._artifacts.upload(path / rel).digest)
            for rel in walk(path)
            if (path / rel).is_file()
        ]
        if not files:
            raise InvalidInput(f"input {name!r}: folder {str(path)!r} holds no files")
        return ChannelInput(name=name, files=files, mode=mode)

    # -- operations ---------------------------------------------------------------------------

    def submit(self, request: SubmitJob | Mapping[str, Any]) -> Job:
        """Submit a job (a :class:`SubmitJob` or its fields); returns it Pending."""
        req = request if isinstance(request, SubmitJob) else SubmitJob.model_validate(request)
        self._ensure_controller()
        result: Job = self._t.call("jobs.submit", req)
        return result

    def list(
        self,
        state: JobState | None = None,
        kind: JobKind | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> JobList:
        result: JobList = self._t.call(
            "jobs.list_jobs", ListJobs(state=state, kind=kind, limit=limit, offset=offset)
        )
        return result

    def get(self, job_id: str) -> Job:
        result: Job = self._t.call("jobs.describe", GetJob(job_id=job_id))
        return result

    def logs(
        self, job_id: str, *, after_seq: int = 0, attempt: int | None = None, limit: int = 1000
    ) -> LogPage:
        req = GetLogs(job_id=job_id, after_seq=after_seq, attempt=attempt, limit=limit)
        result: LogPage = self._t.call("jobs.logs", req)
        return result

    def follow(
        self, job_id: str, *, after_seq: int = 0, attempt: int | None = None, poll_s: float = 0.3
    ) -> Iterator[LogLine]:
        """Every log line from ``after_seq`` on, as it arrives, until the job has ended."""
        self._ensure_controller()
        while True:
            mark = self._mark()
            page = self.logs(job_id, after_seq=after_seq, attempt=attempt)
            yield from page.lines
            after_seq = page.next_after_seq
            if page.finished:
                return
            if not page.lines:
                self._pause(mark, poll_s)

    def wait(
        self,
        job_id: str,
        *,
        logs: bool = True,
        show_progress: bool | None = None,
        poll_s: float = 0.3,
    ) -> Job:
        """Wait for the job to end, printing its log (and a status line on a terminal).

        Returns the job when it Completed or was Stopped; raises :class:`JobFailed` with
        the failure reason when it Failed.
        """
        from rich.console import Console
        from rich.status import Status

        from modelyard.client.progress import wanted

        self._ensure_controller()
        started = time.monotonic()
        console = Console(stderr=True)
        status = (
            Status(f"job {job_id}: waiting", console=console) if wanted(show_progress) else None
        )

        def progress(state: str, detail: str = "") -> None:
            if status is not None:
                elapsed = int(time.monotonic() - started)
                status.update(f"job {job_id}: {state}{detail} · {elapsed}s")

        if status is not None:
            status.start()
        job: Job | None = None
        try:
            if logs:
                for line in self.follow(job_id, poll_s=poll_s):
                    sys.stdout.write(f"{line.text}\n")
                    sys.stdout.flush()
                    progress("Running", f" · attempt {line.attempt}")
            else:
                while True:
                    mark = self._mark()
                    if (current := self.get(job_id)).finished:
                        job = current
                        break
                    progress(current.state)
                    self._pause(mark, poll_s)
        finally:
            if status is not None:
                status.stop()
        if job is None:
            job = self.get(job_id)
        if job.state == "Failed":
            raise JobFailed(
                f"job {job.id} ({job.name}) failed: {job.failure_reason}",
                details={"job_id": job.id, "failure_reason": job.failure_reason},
            )
        return job

    def stop(self, job_id: str) -> Job:
        self._ensure_controller()
        result: Job = self._t.call("jobs.stop", GetJob(job_id=job_id))
        return result

    def metrics(self, job_id: str, name: str | None = None, *, limit: int = 10_000) -> JobMetrics:
        result: JobMetrics = self._t.call(
            "jobs.metrics", GetMetrics(job_id=job_id, name=name, limit=limit)
        )
        return result

    def log_metrics(
        self, job_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> MetricsLogged:
        """Record metric values for a running job through the API."""
        points = [MetricIn(name=k, value=v, step=step) for k, v in metrics.items()]
        result: MetricsLogged = self._t.call(
            "jobs.log_metrics", LogMetrics(job_id=job_id, metrics=points)
        )
        return result
