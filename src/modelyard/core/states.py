"""Transition tables: one per state machine, and every state change checked against it.

A domain declares its machine once and moves rows only through :meth:`StateMachine.advance`
(``jobs/states.py`` is the first such table; endpoint replicas and rollouts are next)::

    REPLICA = StateMachine(
        "replica",
        {
            "Pending": {"Starting", "Draining"},
            "Starting": {"Ready", "Failed", "Draining"},
            "Ready": {"Draining", "Starting"},
            "Failed": {"Draining"},
            "Draining": {"Stopped"},
            "Stopped": set(),
        },
    )
    REPLICA.advance(row, "Ready", what=f"replica {row.id}")

An illegal move raises :class:`IllegalTransition` (a :class:`~modelyard.errors.Conflict`:
a bug, or a race lost to another writer) and changes nothing. A state with no way out is
final.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Set
from typing import Protocol

from modelyard.errors import Conflict, InvalidInput


class IllegalTransition(Conflict):
    """A state change the state machine does not allow (a bug, or a lost race)."""

    code = "illegal_transition"


class HasState(Protocol):
    state: str


class StateMachine:
    """A named transition table: ``transitions[state]`` is where ``state`` may go next."""

    def __init__(self, name: str, transitions: Mapping[str, Set[str]]) -> None:
        targets = {t for allowed in transitions.values() for t in allowed}
        unknown = sorted(targets - set(transitions))
        if unknown:
            raise InvalidInput(
                f"state machine {name!r} moves to undeclared state(s) {', '.join(unknown)}; "
                f"its states: {', '.join(transitions)}"
            )
        self.name = name
        self.transitions: dict[str, frozenset[str]] = {
            state: frozenset(targets) for state, targets in transitions.items()
        }

    @property
    def states(self) -> list[str]:
        return list(self.transitions)

    @property
    def final(self) -> frozenset[str]:
        """States with no way out."""
        return frozenset(s for s, targets in self.transitions.items() if not targets)

    def edges(self) -> Iterator[tuple[str, str]]:
        """Every allowed ``(from, to)`` move, in declaration order."""
        for state, targets in self.transitions.items():
            for target in sorted(targets):
                yield state, target

    def allows(self, current: str, new: str) -> bool:
        return new in self.transitions.get(current, frozenset())

    def check(self, current: str, new: str, *, what: str) -> None:
        """Raise :class:`IllegalTransition` unless ``current → new`` is allowed."""
        allowed = self.transitions.get(current)
        if allowed is None:
            raise IllegalTransition(
                f"{what} is in unknown state {current!r}; "
                f"the {self.name} states are {', '.join(self.transitions)}"
            )
        if new not in allowed:
            options = ", ".join(sorted(allowed)) or "nothing (it is final)"
            raise IllegalTransition(
                f"{what} cannot go from {current} to {new}; from {current} it may go to {options}"
            )

    def advance(self, row: HasState, new: str, *, what: str) -> None:
        """Move ``row`` to ``new`` if allowed; otherwise raise and leave ``row`` as it was."""
        self.check(row.state, new, what=what)
        row.state = new
