"""Jobs: training and processing runs of user code or built-in algorithms.

Inside a job, ``from modelyard.jobs import log_metric`` records metrics (see
:mod:`modelyard.jobs.metrics`); everything else is reached through the SDK
(``my.Estimator``, ``my.Processor``, ``client.jobs``).
"""

from __future__ import annotations

from modelyard.jobs.metrics import log_metric

__all__ = ["log_metric"]
