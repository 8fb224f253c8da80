"""The compute backend interface: what the controller needs from anything that runs jobs.

The controller owns the state machine and the metadata store; a backend only launches,
watches, stops and collects attempts. Everything a backend needs to find an attempt
again after a control-plane restart must be recoverable from the :class:`AttemptPlan`
(deterministic paths) and the ``ref`` dict it returned from :meth:`ComputeBackend.launch`
(stored in the attempt row) — never from memory alone.

What an attempt runs is not the backend's business: it asks the attempt's spec for its
:class:`Workload` (a job's is :class:`modelyard.jobs.workload.JobWorkload`, the container
contract) and calls it where the attempt runs, on this machine or on a Ray node.

A conformance suite (``tests/jobs/test_job_backend.py``) runs against each backend.
"""

from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, Protocol

from modelyard.compute.schemas import ModelArtifact, OutputFile, Resources, ResourceUsage
from modelyard.core.artifacts import ArtifactStore

BackendRef = dict[str, Any]
ExitReason = Literal["exited", "stopped", "max_runtime", "spawn_error", "lost", "collect_error"]
PollState = Literal["not_launched", "launching", "running", "exited"]
FAILURE_LIMIT = 1024  # characters of an attempt's failure text kept (SageMaker's FailureReason)


@dataclass(frozen=True)
class Launch:
    """What the supervisor starts (``launch.json``): the command, its environment and
    working folder, and how long it may run."""

    command: list[str]
    env: dict[str, str]
    cwd: str
    max_runtime_s: int


class Workload(abc.ABC):
    """What an attempt runs, from the domain that submits it; the backends call it where
    the attempt runs. It travels to a Ray node pickled (by reference: a module-level
    class), so it holds plain values and pydantic models only.

    ``root`` is the attempt's working tree (:attr:`AttemptPlan.work_dir` on that machine).
    """

    @abc.abstractmethod
    def prepare(
        self,
        root: Path,
        checkpoints: Path,
        store: ArtifactStore,
        *,
        hosts: list[str],
        host: str,
        envs: Path,
        setup_log: IO[bytes],
    ) -> str:
        """Lay out ``root`` (source, inputs, configuration; a Python environment under
        ``envs`` when one is needed, its output in ``setup_log``); the Python interpreter
        to run with. Raises :class:`~modelyard.errors.ModelyardError`,
        :class:`~modelyard.compute.environments.EnvironmentBuildFailed` or an ``OSError``."""

    @abc.abstractmethod
    def launch(
        self,
        root: Path,
        python: str,
        *,
        job_id: str,
        job_name: str,
        attempt: int,
        hosts: list[str],
        host: str,
    ) -> Launch:
        """What to start for host ``host`` of ``hosts``."""

    @abc.abstractmethod
    def collect(
        self, root: Path, store: ArtifactStore, attempt_dir: Path, *, succeeded: bool
    ) -> Collected:
        """The failure text, and (when ``succeeded``) the model and outputs, stored."""

    def cleanup(self, root: Path) -> None:
        """Free what the ended attempt no longer needs (input copies)."""
        return None


class AttemptSpec(Protocol):
    """What a backend reads of an attempt's spec (:class:`modelyard.jobs.schemas.JobSpec`
    is one)."""

    @property
    def resources(self) -> Resources: ...

    def workload(self) -> Workload:
        """What the attempt runs."""
        ...

    def for_host(self, index: int, count: int) -> AttemptSpec:
        """The spec as host ``index`` of ``count`` runs it (its share of sharded inputs)."""
        ...


@dataclass(frozen=True)
class AttemptPlan:
    """One attempt of one job; every path is derived from the job's folder."""

    job_id: str
    job_name: str
    attempt: int
    spec: AttemptSpec
    job_dir: Path  # <home>/jobs/<job id>, on the control plane's machine

    @property
    def attempt_dir(self) -> Path:
        """Supervisor files (launch.json, status.json, stdout.log, stderr.log)."""
        return self.job_dir / "attempts" / str(self.attempt)

    @property
    def work_dir(self) -> Path:
        """The workload's tree (a job's ``/opt/ml``)."""
        return self.attempt_dir / "ml"

    @property
    def checkpoint_dir(self) -> Path:
        """Persists across the job's attempts: a retry resumes from here."""
        return self.job_dir / "checkpoints"


@dataclass(frozen=True)
class AttemptExit:
    """How an attempt ended."""

    reason: ExitReason
    exit_code: int | None = None
    signal: int | None = None
    message: str | None = None
    usage: ResourceUsage | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None

    @property
    def succeeded(self) -> bool:
        return self.reason == "exited" and self.exit_code == 0


@dataclass(frozen=True)
class Poll:
    """What :meth:`ComputeBackend.poll` found.

    ``not_launched``: nothing was started for this attempt (safe to launch it).
    ``launching``: a launch began but the attempt has not confirmed it runs yet.
    ``running``: it runs; ``ref`` is how to find it again. ``exited``: it ended, see
    ``exit`` (a lost attempt is ``exited`` with reason ``lost``).
    """

    state: PollState
    ref: BackendRef = field(default_factory=dict)
    exit: AttemptExit | None = None


@dataclass(frozen=True)
class LogLines:
    lines: list[tuple[str, str]]  # (stream, text) in the order read
    offsets: dict[str, int]  # new offsets to store with those lines


@dataclass(frozen=True)
class Capacity:
    cpus: int
    memory_mb: int
    gpus: int


@dataclass(frozen=True)
class Collected:
    model: ModelArtifact | None
    outputs: list[OutputFile]
    failure: str | None  # the job's output/failure text


class LaunchFailed(Exception):
    """The attempt could not be started (inputs, environment, the backend itself)."""


class ComputeBackend(abc.ABC):
    """Runs attempts. Instances are created per backend URL by the controller.

    Methods may block (they run on the controller's worker threads, except
    :meth:`poll`, :meth:`read_logs` and :meth:`stop`, which should return quickly).
    """

    scheme: ClassVar[str]

    def __init__(self, url: str, artifacts: ArtifactStore, home: Path) -> None:
        self.url = url
        self.artifacts = artifacts
        self.home = home

    @classmethod
    def validate(cls, url: str, spec: AttemptSpec) -> None:
        """Refuse a job this backend can never run (raise InvalidInput); called at submit."""
        return None

    @abc.abstractmethod
    def capacity(self) -> Capacity:
        """What may run at once; the controller admits jobs within it."""

    @abc.abstractmethod
    def launch(self, plan: AttemptPlan) -> BackendRef:
        """Prepare the contract tree (inputs, source, environment) and start the attempt.

        Returns the reference to store. Output of slow setup (pip) belongs in the
        attempt's log. Only called when :meth:`poll` says ``not_launched``. Raises
        :class:`LaunchFailed` with a user-facing message.
        """

    @abc.abstractmethod
    def poll(self, plan: AttemptPlan, ref: BackendRef) -> Poll:
        """The attempt's state; ``ref`` may be empty after a crash during launch."""

    @abc.abstractmethod
    def read_logs(
        self, plan: AttemptPlan, ref: BackendRef, offsets: dict[str, int], *, final: bool
    ) -> LogLines:
        """Complete lines written after ``offsets`` (all remaining text when ``final``)."""

    @abc.abstractmethod
    def stop(self, plan: AttemptPlan, ref: BackendRef) -> None:
        """Ask the attempt to stop (SIGTERM, then SIGKILL after a grace period)."""

    @abc.abstractmethod
    def collect(self, plan: AttemptPlan, ref: BackendRef, *, succeeded: bool) -> Collected:
        """Store model/ and output/ as artifacts (when ``succeeded``) and read the failure."""

    def cleanup(self, plan: AttemptPlan, ref: BackendRef) -> None:
        """Free what the finished attempt no longer needs (input copies)."""
        return None

    def close(self) -> None:
        """Release what the backend holds for its owner (the controller stops); the
        attempts themselves keep running."""
        return None
