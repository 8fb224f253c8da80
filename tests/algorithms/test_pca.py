"""The built-in PCA, run as a subprocess under the container contract."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from algokit import JobDir, assert_round_trip, features, rows


@pytest.mark.parametrize("mode", ["regular", "randomized"])
def test_explains_low_rank_data(job: JobDir, mode: str) -> None:
    rng = np.random.default_rng(51)
    latent = rng.normal(size=(600, 3)) * [5.0, 3.0, 2.0]
    x = latent @ rng.normal(size=(3, 10)) + rng.normal(scale=0.1, size=(600, 10)) + 4.0
    data = features(x)
    job.write("train", rows(data, 0, 500))
    job.write("validation", rows(data, 500))
    job.write("test", rows(data, 500))
    hps = {"num_components": 3, "algorithm_mode": mode}
    result = job.run("pca", hps, in_process=mode == "randomized")
    result.assert_trained(job, ("model.npz", "model.json"))
    assert result.last("train:explained_variance_ratio") > 0.9
    assert result.last("validation:reconstruction_mse") < 0.05
    predictor = assert_round_trip(job, "pca", pa.table(rows(data, 500)))
    assert predictor.predict(x[:5]).shape == (5, 3)
