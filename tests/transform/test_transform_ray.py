"""A batch transform on the Ray backend (a real local Ray cluster, ``fixtures.ray_cluster``):
the same job, the same worker, the same output registration as on ``local``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from transformkit import FEATURES, fitted_model, register_model, table

import modelyard as my
from fixtures.ray_cluster import RayCluster, kill_named_actors
from modelyard.compute.backends.ray import RayBackend
from modelyard.compute.backends.ray_driver import NAMESPACE


@pytest.fixture
def home(ray_backend_env: RayCluster, tmp_path: Path) -> Iterator[Path]:
    """The test's home; whatever actors its jobs left are gone after it (they hold CPUs
    of the 2-CPU cluster)."""
    path = tmp_path / "home"
    yield path
    kill_named_actors(NAMESPACE, f"modelyard.{RayBackend('ray', None, path).tag}.")  # type: ignore[arg-type]


def test_a_transform_runs_on_ray(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        pq.write_table(table(60, start=60 * i, seed=i), folder / f"p{i}.parquet")
    with my.connect(home=home) as client:
        register_model(client, tmp_path)
        client.datasets.register("customers", folder, profile=False)
        result = my.Transformer("churn", backend="ray", batch_size=25, client=client).transform(
            "customers", join_source="Input", input_filter=FEATURES, logs=False
        )
        assert client.jobs.get(result.job_id).backend == "ray"
        assert (result.rows_in, result.rows_out, result.error_count) == (120, 120, 0)
        out = client.datasets.to_arrow(result.output_dataset, result.output_version)
        data = pq.read_table(folder)
        matrix = np.column_stack([data[name].to_numpy() for name in FEATURES])
        assert out["id"].to_pylist() == list(range(120))
        assert out["prediction"].to_pylist() == fitted_model().predict(matrix).tolist()
