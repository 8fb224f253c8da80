"""The built-in linear learner, run as a subprocess under the container contract."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from algokit import JobDir, assert_round_trip, classification, regression, rows, without

MODEL_FILES = ("model.npz", "model.json")


def test_binary_classifier_with_text_labels(job: JobDir) -> None:
    data = classification(800, seed=21)
    data["label"] = np.where(data["label"] == 1, "spam", "ham")
    job.write("train", rows(data, 0, 600))
    job.write("validation", rows(data, 600, 700))
    job.write("test", rows(data, 700))
    hps = {"predictor_type": "binary_classifier", "wd": 0.01}
    result = job.run("linear_learner", hps)
    result.assert_trained(job, MODEL_FILES)
    assert result.last("validation:accuracy") > 0.9
    test = rows(data, 700)
    predictor = assert_round_trip(job, "linear_learner", pa.table(without(test, "label")))
    assert set(predictor.predict(pa.table(test))) <= {"spam", "ham"}
    proba = predictor.predict_proba(pa.table(test))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_multiclass_classifier_with_l1(job: JobDir) -> None:
    data = classification(900, classes=3, seed=22)
    job.write("train", rows(data, 0, 700))
    job.write("test", rows(data, 700))
    hps = {"predictor_type": "multiclass_classifier", "l1": 0.001, "num_classes": 3}
    result = job.run("linear_learner", hps, in_process=True)
    result.assert_trained(job, MODEL_FILES)
    assert result.last("test:accuracy") > 0.9
    assert_round_trip(job, "linear_learner", pa.table(without(rows(data, 700), "label")))


def test_regressor_recovers_the_weights(job: JobDir) -> None:
    data = regression(600, seed=23)
    job.write("train", rows(data, 0, 500))
    job.write("validation", rows(data, 500))
    job.write("test", rows(data, 500))
    hps = {"predictor_type": "regressor", "normalize_data": "false"}
    result = job.run("linear_learner", hps, in_process=True)
    result.assert_trained(job, MODEL_FILES)
    assert result.last("validation:r2") > 0.99
    with np.load(job.model / "model.npz", allow_pickle=False) as arrays:
        np.testing.assert_allclose(arrays["coef"][0], np.linspace(1.0, -1.0, 5), atol=0.05)
        np.testing.assert_allclose(arrays["intercept"], [1.0], atol=0.05)
    assert_round_trip(job, "linear_learner", pa.table(without(rows(data, 500), "label")))
