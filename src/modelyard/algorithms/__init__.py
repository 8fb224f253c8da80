"""Built-in algorithms: entry points that honour the container contract.

Each algorithm is a module run as ``python -m modelyard.algorithms.<name>`` inside a job's
working directory (see :mod:`modelyard.algorithms._contract`) and exposes
``load(model_dir)`` returning a predictor with ``predict(rows)`` that reads only the
non-pickle model files it wrote. :data:`ALGORITHMS` lists them with their hyperparameter
classes and :func:`validate_hyperparameters` checks a job's hyperparameters the way the
algorithm will; importing this package imports neither the ML libraries nor any
algorithm. Modules whose names start with ``_`` are helpers, not algorithms.
"""

from __future__ import annotations

from modelyard.algorithms._contract import (
    METRIC_FORMAT,
    AlgorithmError,
    DataError,
    HyperparameterError,
    validate_hyperparameters,
)
from modelyard.algorithms._schemas import (
    ALGORITHMS,
    HYPERPARAMETERS,
    AlgorithmInfo,
    Hyperparameters,
    Signature,
)

__all__ = [
    "ALGORITHMS",
    "HYPERPARAMETERS",
    "METRIC_FORMAT",
    "AlgorithmError",
    "AlgorithmInfo",
    "DataError",
    "HyperparameterError",
    "Hyperparameters",
    "Signature",
    "validate_hyperparameters",
]
