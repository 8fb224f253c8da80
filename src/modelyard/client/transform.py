"""SDK for batch transform: ``my.Transformer`` and the operations behind it.

::

    transformer = my.Transformer("churn", version="production", client=client)
    result = transformer.transform("customers", join_source="Input",
                                   output_filter=["customer_id", "prediction"])
    result.output_version        # the predictions, a new version of customers-predictions

``Transformer`` follows the estimator contract (``__init__`` stores, ``transform`` works);
``client.transforms`` is the thin layer over the ``transforms.*`` operations it uses. The
rules (what is checked, how the output is registered) live in
:mod:`modelyard.transform.service`.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from modelyard.client.sdk import Client, connect
from modelyard.client.transforms import TransformsAPI, build
from modelyard.transform.schemas import CreateTransform, Transform


class Transformer:
    """Batch transform with one model version: ``Transformer(model, version).transform(data)``.

    The constructor only stores its parameters (``get_params()`` returns them), as a
    scikit-learn estimator does; :meth:`transform` submits a job of kind ``transform`` and,
    with ``wait``, returns once its predictions are registered as a dataset version.
    """

    def __init__(
        self,
        model: str,
        version: int | str = "latest",
        *,
        batch_size: int = 10_000,
        max_concurrent: int = 1,
        instance_count: int = 1,
        backend: str = "local",
        cpus: int = 1,
        memory_mb: int | None = None,
        max_runtime_s: int = 86_400,
        max_attempts: int = 1,
        accept: str = "parquet",
        experiment: str = "transforms",
        client: Client | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.batch_size = batch_size
        self.max_concurrent = max_concurrent
        self.instance_count = instance_count
        self.backend = backend
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.max_runtime_s = max_runtime_s
        self.max_attempts = max_attempts
        self.accept = accept
        self.experiment = experiment
        self.client = client
        self.latest_transform: Transform | None = None
        self._own_client: Client | None = None

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (the serialisable spec), as scikit-learn does."""
        keys = [
            "model",
            "version",
            "batch_size",
            "max_concurrent",
            "instance_count",
            "backend",
            "cpus",
            "memory_mb",
            "max_runtime_s",
            "max_attempts",
            "accept",
            "experiment",
        ]
        return {k: getattr(self, k) for k in keys}

    def _client(self) -> Client:
        if self.client is not None:
            return self.client
        if self._own_client is None:
            self._own_client = connect()
        return self._own_client

    def transform(
        self,
        dataset: str | None = None,
        version: int | None = None,
        *,
        files: Sequence[Any] | None = None,
        content_type: str | None = None,
        split_type: str | None = None,
        output_dataset: str | None = None,
        join_source: str = "None",
        input_filter: Sequence[str] | None = None,
        output_filter: Sequence[str] | None = None,
        probabilities: bool = False,
        on_error: str = "continue",
        max_errors: int | None = None,
        name: str | None = None,
        wait: bool = True,
        logs: bool = True,
    ) -> Transform:
        """Predict every record of ``dataset`` (version ``version``, default the latest) or
        of uploaded ``files`` ([{"path", "digest"}], with ``content_type``).

        ``join_source="Input"`` keeps the input columns beside ``prediction``;
        ``input_filter`` picks the model's input columns, ``output_filter`` the columns
        kept. A record the model cannot predict is reported (file, row, error) and left out
        (``on_error="continue"``), or fails the job (``"stop"``). With ``wait``, the log's
        progress lines are printed and the result carries ``output_version``; a failed
        job raises :class:`~modelyard.jobs.schemas.JobFailed`.
        """
        client = self._client()
        fields: dict[str, Any] = {
            "model": self.model,
            "version": str(self.version),
            "dataset": dataset,
            "dataset_version": version,
            "files": [dict(f) for f in files] if files is not None else None,
            "content_type": content_type,
            "split_type": split_type,
            "batch_size": self.batch_size,
            "max_concurrent": self.max_concurrent,
            "instance_count": self.instance_count,
            "join_source": join_source,
            "input_filter": builtins.list(input_filter) if input_filter is not None else None,
            "output_filter": builtins.list(output_filter) if output_filter is not None else None,
            "probabilities": probabilities,
            "accept": self.accept,
            "on_error": on_error,
            "max_errors": max_errors,
            "output_dataset": output_dataset,
            "name": name,
            "experiment": self.experiment,
            "backend": self.backend,
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "max_runtime_s": self.max_runtime_s,
            "max_attempts": self.max_attempts,
        }
        api: TransformsAPI = client.transforms
        result = api.create(build(CreateTransform, **fields))
        self.latest_transform = result
        if wait:
            try:
                result = api.wait(result.job_id, logs=logs)
            finally:
                self.latest_transform = api.get(result.job_id)
        return result
