"""Job kinds: what a job of each kind runs, what its request must satisfy, what follows.

A kind is a :class:`Kind` that the package owning it registers at import with
:func:`register_kind`; the runtime imports every domain (:mod:`modelyard.domains`), so
every kind is known before the first request. ``jobs/`` itself declares only the two
kinds of user code, ``training`` and ``processing``; ``transform`` is declared by
:mod:`modelyard.transform.service`, and tuning trials, monitoring runs and the like are
new entries of their own packages, without an edit here. A kind declares

- ``program`` — what its attempts run, chosen at submit from the spec
  (:class:`~modelyard.jobs.schemas.Program`: ``python -m <module>`` or a script of the
  source) and stored in the spec, so a backend, a Ray worker or a restarted controller
  runs it without asking the registry;
- ``validate`` — its checks of a :class:`~modelyard.jobs.schemas.SubmitJob` beyond the
  schema's, raising :class:`~modelyard.errors.InvalidInput` before anything is written
  (it returns whether the job's source has a ``requirements.txt``: its environment is
  built); then the checks every job gets (inputs, backend) follow;
- ``finisher`` — optionally, what happens when a job of the kind ends: a subclass of
  :class:`JobFinisher` (below) that implements ``finish(job)``;
- ``submit_hint`` — optionally, that ``jobs.submit`` (``POST /jobs``) refuses the kind
  with this text, because the owning domain submits it through an operation of its own
  that checks more first (a transform: ``POST /transforms``, which calls
  :func:`modelyard.jobs.service.submit_job`).

**Finishers: one mechanism.** Every finisher is a controller on the kit
(:mod:`modelyard.core.controllers`) built by one class, :class:`JobFinisher`: keyed by job
id, woken through the outbox by ``job.completed`` / ``job.failed`` / ``job.stopped`` of its
kind (from any process on the database), and resynced from the jobs of its kind that
ended in one of its ``states`` without a row in ``job_finishes``. For each it calls
``finish(job)`` once and then writes that row, so a finisher that restarts or takes over
does not call it again. ``finish`` runs operations with :meth:`JobFinisher.call`, as the
finisher's own principal (``system:<name>``, exactly its ``permissions`` plus
``jobs.read``), audited with origin ``controller:<name>``. Delivery is at least once: a
process killed after ``finish`` returned and before the row was written calls it again,
so ``finish`` must be idempotent (a transform's is: ``transforms.finalize`` does nothing
for a finalized transform). A ``finish`` that raises a client error
(:class:`~modelyard.errors.ModelyardError`) is logged and recorded as ``refused``, not
retried; any other exception is retried with the kit's backoff. The jobs domain starts
one finisher per kind that declares one (:func:`make_finishers`, a background service).
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from modelyard.compute.archive import list_tar_gz
from modelyard.core.artifacts import ArtifactStore
from modelyard.core.controllers import OperationController, OperationsHost, system_principal
from modelyard.core.db import utcnow
from modelyard.core.operations import Context
from modelyard.core.paths import safe_relpath
from modelyard.errors import AlreadyExists, InvalidInput, ModelyardError
from modelyard.jobs import builtins
from modelyard.jobs.contract import user_program
from modelyard.jobs.schemas import (
    KIND_NAME,
    TERMINAL_STATES,
    GetJob,
    Job,
    JobSpec,
    Program,
    SubmitJob,
)
from modelyard.jobs.store import JobFinishRow, JobRow

log = logging.getLogger("modelyard.jobs")

SCRIPT_SUFFIXES = (".py", ".sh")

ProgramOf = Callable[[JobSpec], Program]
Validate = Callable[[Context, SubmitJob], bool]


@dataclass(frozen=True)
class Kind:
    """One job kind (see the module docstring for what each field means)."""

    name: str
    program: ProgramOf
    validate: Validate
    finisher: type[JobFinisher] | None = None
    submit_hint: str | None = None


_kinds: dict[str, Kind] = {}
_lock = threading.Lock()


def register_kind(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (once per process, at import of its package)."""
    if re.fullmatch(KIND_NAME, kind.name) is None:
        raise InvalidInput(
            f"job kind name {kind.name!r} must be 1-20 lowercase letters, digits or '_', "
            "starting with a letter"
        )
    if kind.finisher is not None and kind.finisher.kind != kind.name:
        raise InvalidInput(
            f"the finisher of job kind {kind.name!r}, {kind.finisher.__name__}, finishes "
            f"jobs of kind {kind.finisher.kind!r}"
        )
    with _lock:
        if kind.name in _kinds:
            raise AlreadyExists(f"job kind {kind.name!r} is already registered")
        _kinds[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove a kind (a test's, or a plugin's being unloaded); jobs of it stay stored."""
    with _lock:
        _kinds.pop(name, None)


def kinds() -> list[Kind]:
    """Every registered kind, by name."""
    with _lock:
        return [_kinds[name] for name in sorted(_kinds)]


def kind_for(name: str) -> Kind:
    """The kind called ``name``; :class:`InvalidInput` naming the known ones if none is."""
    with _lock:
        found = _kinds.get(name)
        known = sorted(_kinds)
    if found is None:
        raise InvalidInput(
            f"unknown job kind {name!r}; known kinds: {', '.join(known) or 'none'}",
            details={"known": known},
        )
    return found


# -- the kinds of user code: training and processing --------------------------------------


@contextlib.contextmanager
def _local_copy(store: ArtifactStore, digest: str) -> Iterator[Path]:
    """A verified local file with the object's content (the object itself if local)."""
    local = store.local_path(digest)
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
        path = Path(tmp) / "object"
        store.get_to_path(digest, path)
        yield path


def check_user_code(ctx: Context, req: SubmitJob) -> bool:
    """A job of user code: a built-in algorithm, or an entry point that is a script in
    the uploaded source snapshot; True if the source has a requirements.txt."""
    if req.algorithm is not None:
        if req.entry_point is not None or req.source_digest is not None:
            raise InvalidInput("give either algorithm or entry_point + source_digest, not both")
        known = builtins.known_algorithms()
        if req.algorithm not in known:
            raise InvalidInput(
                f"algorithm {req.algorithm!r} is not installed; known algorithms: "
                f"{', '.join(known) or 'none'}",
                details={"known": known},
            )
        return False
    if req.entry_point is None or req.source_digest is None:
        raise InvalidInput(
            "a job needs entry_point and source_digest (a .tar.gz of the code, uploaded "
            "first: the SDK does this), or a built-in algorithm"
        )
    entry = safe_relpath(req.entry_point)
    if not entry.endswith(SCRIPT_SUFFIXES):
        raise InvalidInput(f"entry point {entry!r} must be a Python (.py) or shell (.sh) script")
    if not ctx.artifacts.exists(req.source_digest):
        raise InvalidInput(f"source archive {req.source_digest} was never uploaded")
    with _local_copy(ctx.artifacts, req.source_digest) as path:
        members = list_tar_gz(path)
    if not members.get(entry, False):
        raise InvalidInput(f"entry point {entry!r} is not a file in the source archive")
    return members.get("requirements.txt", False)


def check_no_user_code(what: str) -> Validate:
    """The check of a kind that runs a program of its own: no algorithm, entry point or
    source may be given (``what`` names the job in the error, e.g. 'a transform job')."""

    def check(ctx: Context, req: SubmitJob) -> bool:
        if req.algorithm is not None or req.entry_point is not None or req.source_digest:
            raise InvalidInput(f"{what} runs no algorithm, entry point or source")
        return False

    return check


def module_program(module: str) -> ProgramOf:
    """The program of a kind that always runs ``python -m <module>``."""
    program = Program(module=module)
    return lambda spec: program


TRAINING = register_kind(Kind("training", program=user_program, validate=check_user_code))
PROCESSING = register_kind(Kind("processing", program=user_program, validate=check_user_code))


# -- finishers --------------------------------------------------------------------------------


class FinisherHost(OperationsHost, Protocol):
    """What a finisher needs from the runtime."""

    artifacts: ArtifactStore


class _Recent:
    """A set of the last ``size`` keys added (oldest forgotten first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: dict[str, None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys.pop(key, None)
        self._keys[key] = None
        while len(self._keys) > self.size:
            del self._keys[next(iter(self._keys))]


def _keys_of_kind(kind: str, payload: dict[str, Any]) -> list[str]:
    return [str(payload["job"])] if payload.get("kind") == kind else []


class JobFinisher(OperationController):
    """The finisher of one kind (see the module docstring): subclass it, declare ``name``
    (the controller's and its principal's), ``kind``, ``permissions`` (what ``finish``'s
    operations need), optionally ``states`` (default: every final state), and implement
    :meth:`finish`."""

    kind: ClassVar[str] = ""
    states: ClassVar[frozenset[str]] = TERMINAL_STATES
    permissions: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            keys_of = partial(_keys_of_kind, cls.kind)
            cls.events = {f"job.{state.lower()}": keys_of for state in sorted(cls.states)}

    def __init__(self, runtime: FinisherHost, *, resync_s: float = 30.0, **kwargs: Any) -> None:
        if not self.kind:
            raise TypeError(f"{type(self).__name__} must set the class attribute 'kind'")
        kwargs.setdefault("workers", 2)
        super().__init__(runtime, resync_s=resync_s, **kwargs)
        self.runtime: FinisherHost = runtime
        if "jobs.read" not in self.permissions:  # finish() is handed the job, read as itself
            self.principal = system_principal(self.name, {"jobs.read", *self.permissions})
        # Jobs finished here or found finished: not read again. Bounded: the job_finishes
        # row is what counts, this only saves a read in the moments after a job finished.
        self._done = _Recent(10_000)

    # -- what a kind implements -----------------------------------------------------------

    def finish(self, job: Job) -> None:
        """React to ``job`` having ended (idempotent: it may be called again after a crash)."""
        raise NotImplementedError

    # -- the controller ---------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Jobs of the kind that ended in one of ``states`` and were not finished yet."""
        finished = select(JobFinishRow.job_id).where(JobFinishRow.job_id == JobRow.id)
        with self.db.transaction(write=False) as session:
            return list(
                session.scalars(
                    select(JobRow.id)
                    .where(JobRow.kind == self.kind, JobRow.state.in_(self.states))
                    .where(~exists(finished))
                    .order_by(JobRow.created_at, JobRow.id)
                )
            )

    def reconcile(self, key: str) -> float | None:
        if key in self._done:
            return None
        with self.db.transaction(write=False) as session:
            row = session.get(JobRow, key)
            if row is None or row.kind != self.kind or row.state not in self.states:
                return None
            if session.get(JobFinishRow, key) is not None:
                self._done.add(key)
                return None
        job: Job = self.call("jobs.describe", GetJob(job_id=key))
        outcome, message = "finished", None
        try:
            self.finish(job)
        except ModelyardError as exc:  # a client error does not go away by itself
            log.warning("%s: cannot finish job %s: %s", self.name, key, exc)
            outcome, message = "refused", exc.message
        self._record(key, outcome, message)
        self._done.add(key)
        return None

    def _record(self, job_id: str, outcome: str, message: str | None) -> None:
        try:
            with self.db.transaction() as session:
                if session.get(JobFinishRow, job_id) is None:
                    session.add(
                        JobFinishRow(
                            job_id=job_id,
                            finisher=self.name,
                            outcome=outcome,
                            message=message,
                            finished_at=utcnow(),
                        )
                    )
        except IntegrityError:  # a finisher that took over recorded it at the same moment
            pass


class Finishers:
    """The finisher of every registered kind that declares one (a background service)."""

    def __init__(self, runtime: FinisherHost) -> None:
        self.controllers = [k.finisher(runtime) for k in kinds() if k.finisher is not None]

    def start(self) -> bool:
        for controller in self.controllers:
            controller.start()
        return True

    def stop(self) -> None:
        for controller in reversed(self.controllers):
            controller.stop()


def make_finishers(runtime: FinisherHost) -> Finishers:
    """The background service the jobs domain declares for the kinds' finishers."""
    return Finishers(runtime)
