"""Built-in algorithms: entry points that honour the container contract.

Each algorithm is a module run as ``python -m modelyard.algorithms.<name>`` inside a job's
working directory (see :mod:`modelyard.algorithms._contract`) and exposes
``load(model_dir)`` returning a predictor with ``predict(rows)`` that reads only the
non-pickle model files it wrote. :data:`ALGORITHMS` lists them with their hyperparameter
classes; importing this package imports neither the ML libraries nor any algorithm.
"""

from __future__ import annotations

from modelyard.algorithms.schemas import ALGORITHMS, HYPERPARAMETERS, AlgorithmInfo, Signature

__all__ = ["ALGORITHMS", "HYPERPARAMETERS", "AlgorithmInfo", "Signature"]
