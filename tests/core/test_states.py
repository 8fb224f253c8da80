"""Transition tables: every allowed edge moves, every other move raises and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from modelyard.core.states import IllegalTransition, StateMachine
from modelyard.errors import Conflict, InvalidInput
from modelyard.jobs.states import ATTEMPT_TRANSITIONS, JOB_TRANSITIONS

MACHINES = [
    StateMachine("job", JOB_TRANSITIONS),
    StateMachine("attempt", ATTEMPT_TRANSITIONS),
    StateMachine("light", {"Off": {"On"}, "On": {"Off", "Broken"}, "Broken": set()}),
]


@dataclass
class Row:
    state: str


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_pair_of_states_moves_exactly_when_the_table_allows_it(
    machine: StateMachine,
) -> None:
    edges = set(machine.edges())
    assert edges  # the walk below covers something
    for current in machine.states:
        for new in machine.states:
            row = Row(current)
            if (current, new) in edges:
                machine.advance(row, new, what="the row")
                assert row.state == new
            else:
                with pytest.raises(IllegalTransition, match=f"from {current} to {new}"):
                    machine.advance(row, new, what="the row")
                assert row.state == current


def test_a_final_state_says_so_and_an_unknown_state_names_the_known_ones() -> None:
    light = MACHINES[2]
    assert light.final == {"Broken"}
    with pytest.raises(IllegalTransition, match=r"it may go to nothing \(it is final\)"):
        light.advance(Row("Broken"), "On", what="lamp 1")
    with pytest.raises(
        IllegalTransition, match=r"unknown state 'Dim'; the light states are Off, On, Broken"
    ):
        light.advance(Row("Dim"), "On", what="lamp 1")
    assert issubclass(IllegalTransition, Conflict)  # a lost race is a 409


def test_a_table_that_moves_to_an_undeclared_state_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"undeclared state.*Gone"):
        StateMachine("bad", {"A": {"Gone"}})
