"""The built-in k-means, run as a subprocess under the container contract."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from algokit import JobDir, assert_round_trip, blobs, rows, without

CENTRES = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0], [-6.0, 6.0, 3.0], [0.0, -7.0, -3.0]])


def test_recovers_the_generated_centres(job: JobDir) -> None:
    data = without(blobs(CENTRES, 150, seed=31), "label")
    job.write("train", rows(data, 0, 500))
    job.write("test", rows(data, 500), fmt="parquet")
    result = job.run("kmeans", {"k": 4, "n_init": 3})
    result.assert_trained(job, ("model.npz", "model.json"))
    with np.load(job.model / "model.npz", allow_pickle=False) as arrays:
        centroids = arrays["centroids"]
    distances = np.linalg.norm(CENTRES[:, None, :] - centroids[None, :, :], axis=2)
    assert sorted(distances.argmin(axis=1).tolist()) == [0, 1, 2, 3]
    assert distances.min(axis=1).max() < 0.2
    assert result.last("train:msd") < 0.4  # 3 dims x 0.3**2 variance
    assert_round_trip(job, "kmeans", pa.table(rows(data, 500)))
