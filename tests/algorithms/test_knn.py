"""The built-in k-NN, run as a subprocess under the container contract."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from algokit import JobDir, assert_round_trip, blobs, regression, rows, without

# Apart in angle as well as in space, so cosine distance separates them too.
CENTRES = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, 0.0]])


def test_cosine_classifier_with_sampled_points(job: JobDir) -> None:
    data = blobs(CENTRES, 200, scale=1.0, seed=41)
    job.write("train", rows(data, 0, 500))
    job.write("test", rows(data, 500))
    hps = {"predictor_type": "classifier", "k": 7, "sample_size": 300, "index_metric": "COSINE"}
    result = job.run("knn", hps)
    metadata = result.assert_trained(job, ("model.npz", "model.json"))
    assert metadata["stored_rows"] == 300
    assert result.last("test:accuracy") > 0.9
    with np.load(job.model / "model.npz", allow_pickle=False) as arrays:
        assert arrays["points"].shape == (300, 2)
    assert_round_trip(job, "knn", pa.table(without(rows(data, 500), "label")))


def test_regressor(job: JobDir) -> None:
    data = regression(500, d=3, noise=0.05, seed=42)
    job.write("train", rows(data, 0, 400))
    job.write("validation", rows(data, 400))
    job.write("test", rows(data, 400))
    hps = {"predictor_type": "regressor", "k": 5, "index_metric": "L2"}
    result = job.run("knn", hps, in_process=True)
    result.assert_trained(job, ("model.npz", "model.json"))
    assert result.last("validation:mse") < 0.3 * float(np.var(data["label"]))
    assert_round_trip(job, "knn", pa.table(without(rows(data, 400), "label")))
