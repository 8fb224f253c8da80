"""SDK wrapper for tracking: experiments, runs, and a buffered run for fast metric logging.

::

    with client.tracking.start_run("churn", name="xgb-1", params={"max_depth": 6}) as run:
        for step in range(100):
            run.log_metric("loss", loss, step=step)

Metric points are buffered in memory and sent in batches: by a background thread about
once a second, synchronously in the caller's thread when the buffer holds ``buffer_size``
points (so memory stays bounded and nothing is dropped), on :meth:`ActiveRun.flush`, and
at :meth:`ActiveRun.end` / the end of the ``with`` block. A failed background flush keeps
its points and raises its error on the next call that logs, flushes or ends. Points are
durable once a flush that sent them has returned.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import posixpath
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from modelyard.client.artifacts import ArtifactsAPI
from modelyard.client.transport import Transport
from modelyard.core.idempotency import new_key
from modelyard.core.paths import collect_files, safe_component
from modelyard.errors import ArtifactCorrupted, InvalidInput, NotFound, invalid_input_from
from modelyard.tracking.schemas import (
    KEY,
    MAX_BATCH_KEYS,
    MAX_BATCH_POINTS,
    MAX_STEP,
    MAX_TIMESTAMP_MS,
    ArchiveRunArtifacts,
    BatchLogged,
    CompareRuns,
    Comparison,
    CreateExperiment,
    EndRun,
    EndStatus,
    Experiment,
    ExperimentList,
    GetExperiment,
    GetMetricHistory,
    GetRun,
    GetRunArtifact,
    ListExperiments,
    ListRunArtifacts,
    LogBatch,
    LogRunArtifact,
    MetricHistory,
    MetricPoint,
    Param,
    Run,
    RunArchive,
    RunArtifact,
    RunArtifactList,
    RunInput,
    RunList,
    SearchRuns,
    StartRun,
    Tag,
    UpdateRun,
)

_KEY = re.compile(KEY)
_KEY_CACHE = 10_000  # distinct keys remembered as valid (beyond that, checked each time)


class _Buffer:
    """Points waiting to be sent, kept as four columns (key, value, step, timestamp ms).

    Appending to columns allocates no object per point (a tuple per point would), which
    keeps the garbage collector from running every few hundred points of a hot loop.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.values: list[float] = []
        self.steps: list[int] = []
        self.stamps: list[int] = []

    def __len__(self) -> int:
        return len(self.keys)

    def take(self) -> dict[str, Any]:
        """Remove and return the longest prefix that fits one request (points and
        distinct keys), as the columns of :class:`MetricColumns`."""
        n = min(len(self.keys), MAX_BATCH_POINTS)
        index: dict[str, int] = {}
        key_index = [index.setdefault(k, len(index)) for k in self.keys[:n]]
        if len(index) > MAX_BATCH_KEYS:
            n = next(i for i, k in enumerate(key_index) if k >= MAX_BATCH_KEYS)
            del key_index[n:]
            index = {k: i for k, i in index.items() if i < MAX_BATCH_KEYS}
        cols = {
            "keys": list(index),
            "key_index": key_index,
            "values": self.values[:n],
            "steps": self.steps[:n],
            "timestamps": self.stamps[:n],
        }
        for column in (self.keys, self.values, self.steps, self.stamps):
            del column[:n]
        return cols

    def put_back(self, cols: dict[str, Any]) -> None:
        """Return a batch taken by :meth:`take` to the front (its send failed)."""
        self.keys[:0] = [cols["keys"][i] for i in cols["key_index"]]
        self.values[:0] = cols["values"]
        self.steps[:0] = cols["steps"]
        self.stamps[:0] = cols["timestamps"]


def _build(model: Any, **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        raise invalid_input_from(exc) from exc


def _params(params: Mapping[str, Any] | None) -> list[Param]:
    return [_build(Param, key=k, value=str(v)) for k, v in (params or {}).items()]


def _tags(tags: Mapping[str, Any] | None) -> list[Tag]:
    return [_build(Tag, key=k, value=str(v)) for k, v in (tags or {}).items()]


InputSpec = str | tuple[str, int | None] | tuple[str, int | None, str]


def _inputs(inputs: Sequence[InputSpec] | None) -> list[RunInput]:
    """``"customers"`` (latest), ``("customers", 3)`` or ``("customers", 3, "train")``."""
    built = []
    for item in inputs or []:
        if isinstance(item, str):
            built.append(_build(RunInput, dataset=item))
        else:
            dataset, version, *rest = item
            built.append(
                _build(RunInput, dataset=dataset, version=version, context=rest[0] if rest else "")
            )
    return built


class TrackingAPI:
    def __init__(self, transport: Transport, artifacts: ArtifactsAPI | None = None) -> None:
        self._t = transport
        self._artifacts = artifacts

    def _code_digest(self, code: str | os.PathLike[str]) -> str:
        if self._artifacts is None:
            raise InvalidInput("this client cannot upload a code snapshot (no artifacts API)")
        path = Path(code)
        if not path.exists():
            raise InvalidInput(f"code {str(path)!r} does not exist")
        # Imported by the calls that capture code or the environment (with the archive
        # writer); a command that only reads runs does not load it.
        from modelyard.client import provenance

        with tempfile.TemporaryDirectory() as tmp:
            archive = provenance.snapshot(path, Path(tmp))
            return self._artifacts.upload(archive).digest

    # experiments
    def create_experiment(self, name: str, tags: Mapping[str, str] | None = None) -> Experiment:
        result: Experiment = self._t.call(
            "tracking.create_experiment",
            _build(CreateExperiment, name=name, tags=dict(tags or {})),
        )
        return result

    def get_experiment(self, name: str) -> Experiment:
        result: Experiment = self._t.call(
            "tracking.get_experiment", _build(GetExperiment, name=name)
        )
        return result

    def list_experiments(
        self, prefix: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> ExperimentList:
        result: ExperimentList = self._t.call(
            "tracking.list_experiments",
            _build(ListExperiments, prefix=prefix, limit=limit, offset=offset),
        )
        return result

    # runs
    def create_run(
        self,
        experiment: str,
        *,
        name: str = "",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        notes: str = "",
        inputs: Sequence[InputSpec] | None = None,
        code: str | os.PathLike[str] | None = None,
        capture: bool = False,
    ) -> Run:
        """Start a run without the buffering helper (see :meth:`start_run`).

        ``inputs`` name the dataset versions the run reads; ``code`` (a script or a
        folder) is uploaded as a snapshot and its digest recorded; ``capture`` records
        the environment (imported distributions' versions) and the git commit of the
        code (or of the running script when ``code`` is not given).
        """
        environment: dict[str, str] = {}
        commit: str | None = None
        if capture:
            from modelyard.client import provenance

            environment = provenance.environment()
            where = Path(code) if code is not None else provenance.main_script()
            commit = provenance.git_commit(where) if where is not None else None
        req = _build(
            StartRun,
            experiment=experiment,
            name=name,
            params=_params(params),
            tags=_tags(tags),
            notes=notes,
            inputs=_inputs(inputs),
            code_digest=self._code_digest(code) if code is not None else None,
            git_commit=commit,
            environment=environment,
        )
        result: Run = self._t.call("tracking.start_run", req)
        return result

    def update_run(self, run_id: str, *, name: str | None = None, notes: str | None = None) -> Run:
        """Rename a run or replace its notes."""
        req = _build(UpdateRun, run_id=run_id, name=name, notes=notes)
        result: Run = self._t.call("tracking.update_run", req)
        return result

    def start_run(
        self,
        experiment: str,
        *,
        name: str = "",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        notes: str = "",
        inputs: Sequence[InputSpec] | None = None,
        code: str | os.PathLike[str] | None = None,
        capture: bool = True,
        buffer_size: int = MAX_BATCH_POINTS,
        flush_interval: float = 1.0,
    ) -> ActiveRun:
        """Start a run and return it as a context manager that buffers metric points.

        By default the run records its environment and git commit (``capture``); see
        :meth:`create_run` for ``inputs`` and ``code``.
        """
        run = self.create_run(
            experiment,
            name=name,
            params=params,
            tags=tags,
            notes=notes,
            inputs=inputs,
            code=code,
            capture=capture,
        )
        return ActiveRun(self, run, buffer_size=buffer_size, flush_interval=flush_interval)

    def get_run(self, run_id: str) -> Run:
        result: Run = self._t.call("tracking.get_run", _build(GetRun, run_id=run_id))
        return result

    def end_run(self, run_id: str, status: EndStatus = "FINISHED") -> Run:
        result: Run = self._t.call("tracking.end_run", _build(EndRun, run_id=run_id, status=status))
        return result

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: list[MetricPoint] | list[Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> BatchLogged:
        """Log one batch (validated whole; written all or nothing)."""
        req = _build(
            LogBatch,
            run_id=run_id,
            metrics=list(metrics or []),
            params=_params(params),
            tags=_tags(tags),
        )
        return self._send(req)

    def _send(self, req: LogBatch) -> BatchLogged:
        # One key per batch: the transport may send it again after a lost response.
        if req.idempotency_key is None:
            req = req.model_copy(update={"idempotency_key": new_key()})
        result: BatchLogged = self._t.call("tracking.log_batch", req)
        return result

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> MetricHistory:
        result: MetricHistory = self._t.call(
            "tracking.get_metric_history",
            _build(GetMetricHistory, run_id=run_id, key=key, max_points=max_points),
        )
        return result

    def search_runs(
        self,
        experiment: str | None = None,
        filter: str = "",
        *,
        order_by: str = "",
        limit: int = 100,
        offset: int = 0,
    ) -> RunList:
        result: RunList = self._t.call(
            "tracking.search_runs",
            _build(
                SearchRuns,
                experiment=experiment,
                filter=filter,
                order_by=order_by,
                limit=limit,
                offset=offset,
            ),
        )
        return result

    def compare(
        self, run_ids: list[str], metrics: list[str] | None = None, *, max_points: int = 200
    ) -> Comparison:
        req = _build(
            CompareRuns,
            run_ids=",".join(run_ids),
            metrics=",".join(metrics) if metrics else None,
            max_points=max_points,
        )
        result: Comparison = self._t.call("tracking.compare_runs", req)
        return result

    # output artifacts
    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> RunArtifact:
        """Upload one file to ``<artifact_path>/<file name>`` inside a RUNNING run."""
        name = Path(local_path).name
        path = posixpath.join(artifact_path, name) if artifact_path else name
        req = _build(LogRunArtifact, run_id=run_id, path=path)
        with open(local_path, "rb") as fh:
            result: RunArtifact = self._t.call("tracking.log_artifact", req, stream=fh)
        return result

    def log_artifacts(
        self, run_id: str, folder: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[RunArtifact]:
        """Upload every file below ``folder`` (symlinks not followed), keeping its layout."""
        out = []
        for rel, local in collect_files(folder):
            path = posixpath.join(artifact_path, rel) if artifact_path else rel
            req = _build(LogRunArtifact, run_id=run_id, path=path)
            with open(local, "rb") as fh:
                out.append(self._t.call("tracking.log_artifact", req, stream=fh))
        return out

    def list_artifacts(self, run_id: str, path: str | None = None) -> RunArtifactList:
        """Files and folders directly inside ``path`` (the run's root if unset)."""
        result: RunArtifactList = self._t.call(
            "tracking.list_artifacts", _build(ListRunArtifacts, run_id=run_id, path=path or "")
        )
        return result

    def download_artifacts(self, run_id: str, path: str, dest: str | os.PathLike[str]) -> Path:
        """Download the file or folder ``path`` of a run into the folder ``dest``.

        Returns the local path (``dest/<last component of path>``). Every file is checked
        against its digest and written atomically.
        """
        path = path.strip("/")
        parent, _, name = path.rpartition("/")
        listing = self.list_artifacts(run_id, parent or None)
        entry = next((a for a in listing.artifacts if a.path == path), None)
        if entry is None:
            raise NotFound(f"run {run_id} has no artifact {path!r}")
        target = Path(dest) / safe_component(name)
        self._download_entry(run_id, entry, target)
        return target

    def archive_artifacts(self, run_id: str, path: str) -> RunArchive:
        """Pack the folder ``path`` of a run into one .tar.gz in the artifact store.

        The same files always give the same digest; register it with
        ``client.models.register(name, artifact=archive.digest, ...)``.
        """
        result: RunArchive = self._t.call(
            "tracking.archive_artifacts", _build(ArchiveRunArtifacts, run_id=run_id, path=path)
        )
        return result

    def _download_entry(self, run_id: str, entry: RunArtifact, target: Path) -> None:
        if entry.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            for child in self.list_artifacts(run_id, entry.path).artifacts:
                # Names come from the server: one component each, never a way out of dest.
                child_name = safe_component(posixpath.basename(child.path))
                self._download_entry(run_id, child, target / child_name)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        result = self._t.call(
            "tracking.download_artifact", _build(GetRunArtifact, run_id=run_id, path=entry.path)
        )
        hasher = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in result.chunks:
                    hasher.update(chunk)
                    out.write(chunk)
            if hasher.hexdigest() != entry.digest:
                raise ArtifactCorrupted(
                    f"{entry.path} of run {run_id} downloaded as {hasher.hexdigest()}, "
                    f"not {entry.digest}"
                )
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class ActiveRun:
    """A running run that buffers metric points and sends them in batches."""

    def __init__(
        self,
        api: TrackingAPI,
        run: Run,
        *,
        buffer_size: int = MAX_BATCH_POINTS,
        flush_interval: float = 1.0,
    ) -> None:
        if not 1 <= buffer_size <= MAX_BATCH_POINTS:
            raise InvalidInput(f"buffer_size must be 1..{MAX_BATCH_POINTS}, got {buffer_size}")
        self.api = api
        self.run = run
        self.id = run.id
        self.buffer_size = buffer_size
        self._buffer = _Buffer()  # validated points, in columns
        self._valid_keys: set[str] = set()  # keys already checked against KEY
        self._inflight = 0  # points of the batch being sent
        self._buffer_lock = threading.Lock()
        self._changed = threading.Condition(self._buffer_lock)  # a send ended or failed
        self._flush_lock = threading.Lock()  # one flush at a time, in order
        self._error: BaseException | None = None
        self._ended = False
        self._stop = threading.Event()
        self._wake = threading.Event()  # a full buffer waits for the background sender
        self._thread = threading.Thread(
            target=self._background,
            args=(flush_interval,),
            name=f"modelyard-run-{run.id}",
            daemon=True,
        )
        self._thread.start()
        atexit.register(self._at_exit)

    # logging
    def _raise_pending(self) -> None:
        if self._ended:
            raise InvalidInput(f"run {self.id} has ended in this client")
        error, self._error = self._error, None
        if error is not None:
            raise error

    def log_metric(
        self, key: str, value: float, step: int = 0, timestamp: int | None = None
    ) -> None:
        """Buffer one point (``timestamp`` in ms; now if unset).

        The point is checked here against the same rules the server applies (key
        pattern, step and timestamp ranges), so a bad point fails in the caller and
        can never block the points buffered after it.
        """
        if self._ended or self._error is not None:
            self._raise_pending()
        value = float(value)
        if key not in self._valid_keys:
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise InvalidInput(f"metric key {key!r} does not match {KEY}")
            if len(self._valid_keys) < _KEY_CACHE:
                self._valid_keys.add(key)
        if not isinstance(step, int) or not -MAX_STEP <= step <= MAX_STEP:
            raise InvalidInput(f"step must be an integer within ±2**53, got {step!r}")
        if timestamp is None:
            ts = int(time.time() * 1000)
        else:
            ts = int(timestamp)
            if not 0 <= ts <= MAX_TIMESTAMP_MS:
                raise InvalidInput(f"timestamp must be milliseconds in 0..2**53, got {timestamp!r}")
        buffer = self._buffer
        with self._changed:
            buffer.keys.append(key)
            buffer.values.append(value)
            buffer.steps.append(step)
            buffer.stamps.append(ts)
            if len(buffer.keys) < self.buffer_size:
                return
            # Full: the background thread sends it while the caller goes on logging. One
            # more buffer may fill meanwhile; past that (2 x buffer_size points pending)
            # the caller waits for the send in flight, so memory stays bounded.
            self._wake.set()
            while (
                len(self._buffer) + self._inflight >= 2 * self.buffer_size
                and self._error is None
                and self._thread.is_alive()
            ):
                self._changed.wait(1.0)
        if self._error is not None:
            self._raise_pending()  # the points stay buffered for a later flush
        if not self._thread.is_alive():
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            self.log_metric(key, value, step=step, timestamp=now)

    def log_param(self, key: str, value: Any) -> None:
        """Set a param now (params are immutable: a different value raises Conflict)."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._raise_pending()
        self.api.log_batch(self.id, params=params)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._raise_pending()
        self.api.log_batch(self.id, tags=tags)

    # flushing
    def _flush(self, *, full_only: bool = False) -> None:
        """Send the buffer in batches; with ``full_only``, only while a full one is there
        (the caller is still logging: sending its first points alone would make small
        batches)."""
        with self._flush_lock:
            while True:
                with self._buffer_lock:
                    if full_only and len(self._buffer) < self.buffer_size:
                        return
                    batch = self._buffer.take()
                    self._inflight = len(batch["values"])
                if not self._inflight:
                    return
                try:
                    self.api._send(_build(LogBatch, run_id=self.id, points=batch))
                except BaseException:
                    with self._changed:  # keep the points: nothing is dropped
                        self._buffer.put_back(batch)
                        self._inflight = 0
                        self._changed.notify_all()
                    raise
                with self._changed:
                    self._inflight = 0
                    self._changed.notify_all()

    def flush(self) -> None:
        """Send every buffered point now; raises the error of a failed earlier flush."""
        error, self._error = self._error, None
        if error is not None:
            raise error
        self._flush()

    def _background(self, interval: float) -> None:
        while True:
            woken = self._wake.wait(interval)
            self._wake.clear()  # before flushing: a later wake-up is never lost
            if self._stop.is_set():
                return
            if self._error is not None:
                continue
            try:
                self._flush(full_only=woken)
            except Exception as exc:  # surfaced to the caller on its next call
                with self._changed:
                    self._error = exc
                    self._changed.notify_all()

    @property
    def pending(self) -> int:
        """Points buffered but not yet acknowledged by the server."""
        with self._buffer_lock:
            return len(self._buffer) + self._inflight

    # ending
    def end(self, status: EndStatus = "FINISHED") -> Run:
        """Flush, stop the background thread, and end the run with ``status``.

        If the final flush fails the run is ended as FAILED (best effort) and the flush
        error is raised.
        """
        if self._ended:
            return self.run
        self._stop.set()
        self._wake.set()
        self._thread.join()
        try:
            self.flush()
        except BaseException:
            self._ended = True
            atexit.unregister(self._at_exit)
            with contextlib.suppress(Exception):  # the flush error is the one to report
                self.api.end_run(self.id, "FAILED")
            raise
        self._ended = True
        atexit.unregister(self._at_exit)
        self.run = self.api.end_run(self.id, status)
        return self.run

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):  # nowhere left to report to at exit
            self.end()

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end("FINISHED")
            return
        try:
            self.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except Exception as end_error:  # the body's exception is the one that propagates
            exc.add_note(f"modelyard: ending run {self.id} also failed: {end_error!r}")


__all__ = ["ActiveRun", "TrackingAPI"]
