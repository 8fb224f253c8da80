"""The job and attempt state machines; every state change goes through :func:`advance`.

::

    Pending ──▶ Starting ──▶ Running ──▶ Completed
       │           │  ▲         │  ──▶ Failed
       │           │  └─────────┤  ──▶ Stopped
       │           ▼            ▼
       └──────▶ Stopped     Pending   (an attempt failed and the retry policy allows another)

``Starting`` means an attempt has been created and is being prepared/launched by the
controller; ``Running`` means its backend has taken it. A job in ``Starting`` may also end
``Failed`` (the launch itself failed for good) or go back to ``Pending`` (a retryable
launch failure). Completed, Failed and Stopped are final.

An attempt is ``Starting`` → ``Running`` → ``Completed`` | ``Failed`` | ``Stopped``, and
may end ``Failed`` or ``Stopped`` straight from ``Starting``.
"""

from __future__ import annotations

from modelyard.core.states import HasState, IllegalTransition, StateMachine

JOB = StateMachine(
    "job",
    {
        "Pending": {"Starting", "Stopped"},
        "Starting": {"Running", "Pending", "Failed", "Stopped"},
        "Running": {"Completed", "Failed", "Stopped", "Pending"},
        "Completed": set(),
        "Failed": set(),
        "Stopped": set(),
    },
)
ATTEMPT = StateMachine(
    "attempt",
    {
        "Starting": {"Running", "Failed", "Stopped"},
        "Running": {"Completed", "Failed", "Stopped"},
        "Completed": set(),
        "Failed": set(),
        "Stopped": set(),
    },
)
JOB_TRANSITIONS: dict[str, frozenset[str]] = JOB.transitions
ATTEMPT_TRANSITIONS: dict[str, frozenset[str]] = ATTEMPT.transitions

__all__ = [
    "ATTEMPT",
    "ATTEMPT_TRANSITIONS",
    "JOB",
    "JOB_TRANSITIONS",
    "IllegalTransition",
    "advance",
    "check",
]


def check(table: dict[str, frozenset[str]], what: str, current: str, new: str) -> None:
    """Raise :class:`IllegalTransition` unless ``current → new`` is allowed in ``table``."""
    machine = ATTEMPT if table is ATTEMPT_TRANSITIONS else JOB
    machine.check(current, new, what=what)


def advance(row: HasState, new: str, *, what: str, attempt: bool = False) -> None:
    """Move ``row`` to state ``new`` if the job (or attempt) state machine allows it."""
    (ATTEMPT if attempt else JOB).advance(row, new, what=what)
