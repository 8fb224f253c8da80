"""BentoML's side of benchmarks/bench_serving.py: the benchmark's fitted estimator behind
one JSON API, with BentoML's default service settings.

Runs only in .venv-bentoml (``make bench-bentoml-venv``), never in the project's venv. The
benchmark starts it as

    BENCH_BENTOML_MODEL=/tmp/.../model.pkl .venv-bentoml/bin/bentoml serve service:Classifier \
        --working-dir benchmarks/bentoml --host 127.0.0.1 --port PORT

and posts ``{"instances": [[x1, ..., x20]]}`` to ``/predict``; the reply is the JSON list of
predicted labels (``[1]``). ``@bentoml.service`` takes no arguments: BentoML's defaults,
which are one worker process (like ``--workers 1`` for modelyard and ``-w 1`` for mlflow),
no adaptive batching and no concurrency limit.

The model file is a pickle the benchmark wrote a moment earlier from the estimator it had
just fitted; .venv-bentoml pins the same scikit-learn, XGBoost and NumPy as
requirements.lock so that it loads unchanged.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import bentoml
import numpy as np

MODEL_ENV = "BENCH_BENTOML_MODEL"


@bentoml.service
class Classifier:
    def __init__(self) -> None:
        path = os.environ.get(MODEL_ENV)
        if not path:
            raise RuntimeError(f"set {MODEL_ENV} to the pickled estimator's path")
        with Path(path).open("rb") as f:
            # the benchmark's own freshly fitted model, written by the same run
            self.model = pickle.load(f)

    @bentoml.api
    def predict(self, instances: list[list[float]]) -> list[int]:
        """Predicted class labels, one per row of ``instances``."""
        return [int(label) for label in self.model.predict(np.asarray(instances))]
