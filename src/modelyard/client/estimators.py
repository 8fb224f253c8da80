"""``my.Estimator`` and ``my.Processor``: a job's spec as keyword parameters.

They follow the scikit-learn estimator contract: ``__init__`` only stores its parameters
(``get_params()`` returns them, the serialisable spec a tuner or pipeline can clone);
``fit``/``run`` uploads the code and local inputs and submits the job through
:class:`~modelyard.client.jobs.JobsAPI`.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping, Sequence
from typing import Any

from modelyard.client.jobs import InputSource, JobsAPI
from modelyard.client.sdk import Client, connect
from modelyard.errors import InvalidInput
from modelyard.jobs.schemas import (
    InputMode,
    Job,
    JobKind,
    MetricDefinition,
    Resources,
    RetryPolicy,
    SubmitJob,
)


def _metric_definitions(defs: Sequence[Any] | None) -> builtins.list[MetricDefinition]:
    """Accept MetricDefinition, {"name","regex"} or SageMaker's {"Name","Regex"}."""
    out = []
    for d in defs or []:
        if isinstance(d, MetricDefinition):
            out.append(d)
        elif isinstance(d, Mapping):
            out.append(
                MetricDefinition(
                    name=d.get("name", d.get("Name")), regex=d.get("regex", d.get("Regex"))
                )
            )
        else:
            raise InvalidInput(f"metric definition {d!r} is not a {{'name', 'regex'}} mapping")
    return out


class _JobRunner:
    """The spec of a job as keyword parameters (scikit-learn style: stored, not used)."""

    _kind: JobKind = "training"

    def __init__(
        self,
        entry_point: str | os.PathLike[str] | None = None,
        source_dir: str | os.PathLike[str] | None = None,
        *,
        algorithm: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        arguments: Sequence[str] | None = None,
        environment: Mapping[str, str] | None = None,
        instance_count: int = 1,
        backend: str = "local",
        cpus: int = 1,
        memory_mb: int | None = None,
        gpus: int = 0,
        max_runtime_s: int = 86_400,
        max_attempts: int = 1,
        metric_definitions: Sequence[Any] | None = None,
        input_mode: InputMode = "File",
        name: str | None = None,
        experiment: str = "jobs",
        client: Client | None = None,
    ) -> None:
        self.entry_point = entry_point
        self.source_dir = source_dir
        self.algorithm = algorithm
        self.hyperparameters = hyperparameters
        self.arguments = arguments
        self.environment = environment
        self.instance_count = instance_count
        self.backend = backend
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.gpus = gpus
        self.max_runtime_s = max_runtime_s
        self.max_attempts = max_attempts
        self.metric_definitions = metric_definitions
        self.input_mode = input_mode
        self.name = name
        self.experiment = experiment
        self.client = client
        self.latest_job: Job | None = None
        self._own_client: Client | None = None

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (the serialisable spec), as scikit-learn does."""
        keys = [
            "entry_point",
            "source_dir",
            "algorithm",
            "hyperparameters",
            "arguments",
            "environment",
            "instance_count",
            "backend",
            "cpus",
            "memory_mb",
            "gpus",
            "max_runtime_s",
            "max_attempts",
            "metric_definitions",
            "input_mode",
            "name",
            "experiment",
        ]
        return {k: getattr(self, k) for k in keys}

    def _client(self) -> Client:
        if self.client is not None:
            return self.client
        if self._own_client is None:
            self._own_client = connect()
        return self._own_client

    def _submit(
        self,
        inputs: Mapping[str, InputSource] | None,
        arguments: Sequence[str] | None,
        name: str | None,
    ) -> Job:
        client = self._client()
        jobs: JobsAPI = client.jobs
        entry: str | None = None
        digest: str | None = None
        if self.entry_point is not None:
            entry, digest = jobs.upload_source(self.entry_point, self.source_dir)
        request = SubmitJob(
            kind=self._kind,
            name=name or self.name,
            experiment=self.experiment,
            entry_point=entry,
            source_digest=digest,
            algorithm=self.algorithm,
            hyperparameters=dict(self.hyperparameters or {}),
            arguments=list(arguments if arguments is not None else self.arguments or []),
            environment=dict(self.environment or {}),
            inputs=[jobs.channel(ch, src, self.input_mode) for ch, src in (inputs or {}).items()],
            resources=Resources(
                cpus=self.cpus,
                memory_mb=self.memory_mb,
                gpus=self.gpus,
                instance_count=self.instance_count,
            ),
            backend=self.backend,
            max_runtime_s=self.max_runtime_s,
            retry=RetryPolicy(max_attempts=self.max_attempts),
            metric_definitions=_metric_definitions(self.metric_definitions),
        )
        job = jobs.submit(request)
        self.latest_job = job
        return job

    def _finish(self, job: Job, wait: bool, logs: bool) -> Job:
        if wait:
            jobs: JobsAPI = self._client().jobs
            try:
                job = jobs.wait(job.id, logs=logs)
            finally:
                self.latest_job = jobs.get(job.id)
        return job

    @property
    def model_data(self) -> str | None:
        """Digest of the latest job's model.tar.gz (None until one completed)."""
        job = self.latest_job
        return job.model.digest if job is not None and job.model is not None else None


class Estimator(_JobRunner):
    """A training job: your script (SageMaker script mode works unchanged) or a built-in.

    >>> est = my.Estimator(entry_point="train.py", source_dir="src",
    ...                    hyperparameters={"n-estimators": 100})
    >>> job = est.fit({"train": "customers:2"})     # waits, streaming the log
    >>> job.model.digest                              # model.tar.gz in the artifact store
    """

    _kind: JobKind = "training"

    def fit(
        self,
        inputs: Mapping[str, InputSource] | None = None,
        *,
        wait: bool = True,
        logs: bool = True,
        name: str | None = None,
    ) -> Job:
        """Submit the job; with ``wait`` stream its log and return it when it ends
        (raising :class:`JobFailed` if it failed)."""
        return self._finish(self._submit(inputs, None, name), wait, logs)


class Processor(_JobRunner):
    """A processing job: the same contract, run for its ``output/`` files."""

    _kind: JobKind = "processing"

    def run(
        self,
        inputs: Mapping[str, InputSource] | None = None,
        *,
        arguments: Sequence[str] | None = None,
        wait: bool = True,
        logs: bool = True,
        name: str | None = None,
    ) -> Job:
        """Submit the job with optional extra ``arguments``; see :meth:`Estimator.fit`."""
        return self._finish(self._submit(inputs, arguments, name), wait, logs)
