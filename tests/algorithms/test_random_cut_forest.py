"""The built-in anomaly detector (an Isolation Forest), run as a subprocess."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from algokit import JobDir, assert_round_trip, features, without


def test_scores_injected_outliers_higher(job: JobDir) -> None:
    rng = np.random.default_rng(61)
    normal = rng.normal(size=(600, 4))
    outliers = rng.normal(size=(20, 4)) * 0.5 + 6.0
    x = np.vstack([normal, outliers])
    anomaly = np.r_[np.zeros(600, dtype=np.int64), np.ones(20, dtype=np.int64)]
    job.write("train", features(normal[:500]))
    test = {**features(np.vstack([normal[500:], outliers])), "anomaly": anomaly[500:]}
    job.write("test", test)
    hps = {"num_trees": 50, "num_samples_per_tree": 128, "feature_dim": 4, "label": "anomaly"}
    result = job.run("random_cut_forest", hps)
    result.assert_trained(job, ("model.skops",))
    assert result.last("test:auc") > 0.95
    predictor = assert_round_trip(job, "random_cut_forest", pa.table(without(test, "anomaly")))
    scores = predictor.predict(x[500:])
    assert scores[-20:].min() > np.median(scores[:100])
    assert ((scores > 0) & (scores <= 1)).all()
