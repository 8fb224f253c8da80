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

from typing import Protocol

from modelyard.errors import Conflict

JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    "Pending": frozenset({"Starting", "Stopped"}),
    "Starting": frozenset({"Running", "Pending", "Failed", "Stopped"}),
    "Running": frozenset({"Completed", "Failed", "Stopped", "Pending"}),
    "Completed": frozenset(),
    "Failed": frozenset(),
    "Stopped": frozenset(),
}

ATTEMPT_TRANSITIONS: dict[str, frozenset[str]] = {
    "Starting": frozenset({"Running", "Failed", "Stopped"}),
    "Running": frozenset({"Completed", "Failed", "Stopped"}),
    "Completed": frozenset(),
    "Failed": frozenset(),
    "Stopped": frozenset(),
}


class IllegalTransition(Conflict):
    """A state change the state machine does not allow (a bug, or a lost race)."""

    code = "illegal_transition"


class HasState(Protocol):
    state: str


def check(table: dict[str, frozenset[str]], what: str, current: str, new: str) -> None:
    """Raise :class:`IllegalTransition` unless ``current → new`` is allowed in ``table``."""
    allowed = table.get(current)
    if allowed is None:
        raise IllegalTransition(f"{what} is in unknown state {current!r}")
    if new not in allowed:
        options = ", ".join(sorted(allowed)) or "nothing (it is final)"
        raise IllegalTransition(
            f"{what} cannot go from {current} to {new}; from {current} it may go to {options}"
        )


def advance(row: HasState, new: str, *, what: str, attempt: bool = False) -> None:
    """Move ``row`` to state ``new`` if the job (or attempt) state machine allows it."""
    check(ATTEMPT_TRANSITIONS if attempt else JOB_TRANSITIONS, what, row.state, new)
    row.state = new
