"""A job attempt as the compute backends run it: the container contract of :mod:`contract`.

A backend (:mod:`modelyard.compute.backends`) knows nothing of jobs: it asks the
attempt's spec for its :class:`~modelyard.compute.backends.base.Workload` and calls it
where the attempt runs — on this machine, or on a Ray node, where it arrives pickled by
reference with the :class:`~modelyard.jobs.schemas.JobSpec` it holds. The workload lays
out the ``/opt/ml``-like tree, says what to start, and harvests ``model/`` and
``output/``.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from modelyard.compute.backends.base import Collected, Launch, Workload
from modelyard.compute.environments import ensure_environment
from modelyard.core.artifacts import ArtifactStore
from modelyard.jobs import contract
from modelyard.jobs.contract import Layout
from modelyard.jobs.schemas import JobSpec, ResolvedChannel

SHARDED = "ShardedByS3Key"


def shard(channel: ResolvedChannel, index: int, count: int) -> ResolvedChannel:
    """Host ``index`` of ``count``'s share of a channel: every ``count``-th file by path.

    As SageMaker's ShardedByS3Key: each host gets about 1/count of the files (none when
    there are fewer files than hosts).
    """
    files = sorted(channel.files, key=lambda f: f.path)[index::count]
    return channel.model_copy(update={"files": files})


def host_inputs(spec: JobSpec, index: int, count: int) -> list[ResolvedChannel]:
    """The channels as host ``index`` sees them: sharded ones cut, the others whole."""
    return [
        shard(ch, index, count) if count > 1 and ch.distribution == SHARDED else ch
        for ch in spec.inputs
    ]


@dataclass(frozen=True)
class JobWorkload(Workload):
    """A training or processing attempt of ``spec``, laid out by :mod:`contract`."""

    spec: JobSpec

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
        spec, layout = self.spec, Layout(root)
        contract.create_tree(layout, checkpoints)
        if spec.source_digest is not None:
            contract.extract_source(layout, spec.source_digest, store)
        contract.materialize_inputs(layout, spec.inputs, store)
        contract.write_config(layout, spec, hosts, host)
        if spec.requirements and contract.has_requirements(layout):
            return str(ensure_environment(layout.code / "requirements.txt", envs, setup_log))
        return sys.executable

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
        spec, layout = self.spec, Layout(root)
        env = contract.environment(
            layout,
            spec,
            job_id=job_id,
            job_name=job_name,
            attempt=attempt,
            hosts=hosts,
            current_host=host,
        )
        return Launch(
            command=contract.command(spec, layout, python),
            env=env,
            cwd=str(layout.code if spec.entry_point else layout.root),
            max_runtime_s=spec.max_runtime_s,
        )

    def collect(
        self, root: Path, store: ArtifactStore, attempt_dir: Path, *, succeeded: bool
    ) -> Collected:
        layout = Layout(root)
        failure = contract.read_failure(layout)
        if not succeeded:
            return Collected(None, [], failure)
        model, outputs = contract.harvest(layout, store, attempt_dir)
        return Collected(model, outputs, failure)

    def cleanup(self, root: Path) -> None:
        shutil.rmtree(Layout(root).data, ignore_errors=True)
