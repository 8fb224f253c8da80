"""Metrics from a job's log: SageMaker-style metric definitions and the in-job helper.

Inside a job, :func:`log_metric` prints one line in a fixed format (the one the built-in
algorithms print too; ``step=`` is optional)::

    #metric name=validation:auc value=0.91 step=3

and the controller, which already reads every log line, stores it as a metric point. No
network, token or server address is needed inside the job, and the line is also a
readable record in the log. This module imports only the standard library, so the
helper costs nothing to import in a job.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

METRIC_LINE_PREFIX = "#metric "
_METRIC_NAME = re.compile(r"[A-Za-z0-9_.:/=+@-]{1,255}")
_METRIC_LINE = re.compile(r"#metric name=(\S{1,255}) value=(\S+)(?: step=(\d{1,18}))?\s*")
# Metric definitions run over at most this much of a line: keeps a pathological regex on a
# pathological line from stalling the controller for long.
MATCH_WINDOW = 4096


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record a metric of the running job (``step`` optional, a non-negative int).

    Raises ``ValueError`` for a name outside ``[A-Za-z0-9_.:/=+@-]{1,255}``, a value that
    is not a finite number, or a negative step.
    """
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"metric name {name!r} must match [A-Za-z0-9_.:/=+@-]{{1,255}}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric {name!r}: value {value!r} is not a finite number")
    if step is not None and (not isinstance(step, int) or step < 0):
        raise ValueError(f"metric {name!r}: step {step!r} must be a non-negative integer")
    suffix = "" if step is None else f" step={step}"
    sys.stdout.write(f"{METRIC_LINE_PREFIX}name={name} value={number!r}{suffix}\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class ExtractedMetric:
    name: str
    value: float
    step: int | None
    source: str  # "sdk" (log_metric line) or "regex" (a metric definition)


def _from_sdk_line(text: str) -> ExtractedMetric | None:
    match = _METRIC_LINE.fullmatch(text)
    if match is None or not _METRIC_NAME.fullmatch(match.group(1)):
        return None
    try:
        value = float(match.group(2))
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    step = int(match.group(3)) if match.group(3) is not None else None
    return ExtractedMetric(match.group(1), value, step, "sdk")


class MetricExtractor:
    """Turns log lines into metric points with compiled ``(name, regex)`` definitions."""

    def __init__(self, definitions: Sequence[tuple[str, str]]) -> None:
        self._definitions = [(name, re.compile(regex)) for name, regex in definitions]

    def extract(self, lines: Iterable[str]) -> list[ExtractedMetric]:
        found: list[ExtractedMetric] = []
        for text in lines:
            if text.startswith(METRIC_LINE_PREFIX):
                metric = _from_sdk_line(text)
                if metric is not None:
                    found.append(metric)
                continue
            window = text[:MATCH_WINDOW]
            for name, pattern in self._definitions:
                match = pattern.search(window)
                if match is None:
                    continue
                try:
                    value = float(match.group(1))
                except (TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    found.append(ExtractedMetric(name, value, None, "regex"))
        return found
