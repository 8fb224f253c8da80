"""How this layer reaches modelyard: one operation call at a time, as the caller.

:class:`Caller` runs an operation through :meth:`Runtime.execute` with the principal
resolved from the request's bearer token, its origin and request id, exactly as a
native route does; a request that does not validate raises ``ValidationError``, which
the router answers as ``INVALID_PARAMETER_VALUE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

from modelyard.core.operations import Principal
from modelyard.errors import AlreadyExists, NotFound, PermissionDenied
from modelyard.mlflow_compat import entities
from modelyard.runtime import Runtime
from modelyard.tracking.schemas import Experiment, Run


@dataclass
class Caller:
    runtime: Runtime
    principal: Principal
    origin: str
    request_id: str

    def __call__(self, op_name: str, *, stream: BinaryIO | None = None, **fields: Any) -> Any:
        op = self.runtime.operations[op_name]
        req = op.input.model_validate(fields)
        return self.runtime.execute(
            op,
            req,
            self.principal,
            origin=self.origin,
            request_id=self.request_id,
            stream=stream,
        )

    def require(self, op_name: str) -> None:
        """Refuse (403, audited) unless the caller may call ``op_name``: for MLflow routes
        that answer without calling an operation but stand for one."""
        self.runtime.authorize(
            self.runtime.operations[op_name],
            self.principal,
            origin=self.origin,
            request_id=self.request_id,
        )

    # experiments by MLflow id
    def default_experiment(self) -> Experiment:
        """The experiment named ``Default`` (MLflow's ``"0"``), created on first use."""
        name = entities.DEFAULT_EXPERIMENT_NAME
        try:
            found: Experiment = self("tracking.get_experiment", name=name)
            return found
        except NotFound:
            pass
        try:
            created: Experiment = self("tracking.create_experiment", name=name)
            return created
        except AlreadyExists:  # created concurrently
            again: Experiment = self("tracking.get_experiment", name=name)
            return again
        except PermissionDenied:  # a read-only caller cannot create it: it does not exist
            raise NotFound(f"experiment {entities.DEFAULT_EXPERIMENT_ID} does not exist") from None

    def experiment(self, experiment_id: str) -> Experiment:
        if experiment_id == entities.DEFAULT_EXPERIMENT_ID:
            return self.default_experiment()
        exp: Experiment = self("tracking.get_experiment_by_id", experiment_id=experiment_id)
        return exp

    def experiment_id_of(self, run: Run, cache: dict[str, str] | None = None) -> str:
        """The MLflow experiment id of a run (modelyard runs name their experiment)."""
        if run.experiment == entities.DEFAULT_EXPERIMENT_NAME:
            return entities.DEFAULT_EXPERIMENT_ID
        if cache is not None and run.experiment in cache:
            return cache[run.experiment]
        exp: Experiment = self("tracking.get_experiment", name=run.experiment)
        if cache is not None:
            cache[run.experiment] = exp.id
        return exp.id

    def run(self, run_id: str) -> Run:
        found: Run = self("tracking.get_run", run_id=run_id)
        return found
