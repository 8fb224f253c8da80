"""The controller-kit conformance suite: crash a controller anywhere, restart it, converge.

A controller on the kit (:mod:`modelyard.core.controllers`) conforms when, killed at any
of its state transitions — inside the transaction that makes the move (so it never
commits) or just after that transaction committed — or at any side-effect point it
declares, a new instance that takes over once the dead one's lease lapses drives every
item to exactly one final state of its state machine, and no side effect (a launch) was
made twice or left behind (made, then forgotten: a process nobody watches).

To apply it to a controller, describe it as a :class:`Subject` (its state machines, how to
build an instance with a short lease, how to create its desired state, how to read its
items' states and the side effects made), then, in its tests::

    POINTS = ["job Pending->Starting (in its transaction)", ..., "launched"]

    def test_every_crash_point_is_listed(db):
        assert discover(JobsSubject(), db) == POINTS

    @pytest.mark.parametrize("label", POINTS)
    def test_a_crash_converges(db, label):
        check_converged(JobsSubject(), crash_and_restart(JobsSubject(), db, CrashAt(label)))

Crash points come from three places: every :meth:`StateMachine.advance` of the subject's
machines (two points each: ``"<machine> A->B (in its transaction)"``, raised inside the
call so the transaction rolls back, and ``"<machine> A->B (committed)"``, raised from the
session's ``after_commit``), and :func:`point` calls in the controller's own code (or in a
test double it launches through, e.g. a backend's ``launch``), such as ``"launched"``
right after a side effect and before it is recorded.

"Killed" means, in-process (:func:`crash_and_restart`): the point raises :class:`Crash`
(a ``BaseException``, so no ``except Exception`` in the controller swallows it) after the
controller's threads were told to stop without releasing its lease, as if its process
died there (other workers finish the reconcile they are in: a process kill would not let
them, :func:`kill_and_restart` covers that); and out of process
(:func:`kill_and_restart`): the controller runs in a child process that SIGKILLs itself
at the point.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import event, select
from sqlalchemy.orm import Session, object_session

from modelyard.core.control_store import ControllerLeaseRow
from modelyard.core.controllers import Controller
from modelyard.core.db import Database
from modelyard.core.states import HasState, StateMachine

WAIT = 60.0  # seconds for a restarted controller to converge (it takes ~1 s)
LEASE_S = 0.5  # short, so the restarted instance takes over within a second
REPO = Path(__file__).resolve().parents[1]


class Subject(Protocol):
    """What the suite needs to know about the controller under test."""

    #: The lease name of its controller (its class's ``name``).
    name: str
    #: The transition tables it drives: each move is a crash point.
    machines: Sequence[StateMachine]

    def setup(self, db: Database) -> None:
        """Create the desired state (the items to drive) in a migrated database."""

    def controller(self, db: Database, *, lease_s: float) -> Controller:
        """A new, not yet started, instance."""

    def states(self, db: Database) -> Mapping[str, str]:
        """Every item's current state, by item."""

    def launches(self, db: Database) -> Sequence[Hashable]:
        """One entry per side effect made (e.g. ``(item, attempt)``), duplicates included."""

    def abandoned(self, db: Database) -> Sequence[Hashable]:
        """Side effects made but never taken up (an attempt whose process nobody watches)."""

    def expected(self) -> tuple[Mapping[str, str], Sequence[Hashable]] | None:
        """The final states and the launches a run without crashes ends with, if known."""


class Crash(BaseException):
    """Raised at the armed crash point: the controller dies there."""


@dataclass(frozen=True)
class CrashAt:
    """The ``occurrence``-th time the crash point ``label`` is reached (1 = the first)."""

    label: str
    occurrence: int = 1

    def __str__(self) -> str:
        return self.label if self.occurrence == 1 else f"{self.label} #{self.occurrence}"


@dataclass
class Crasher:
    """Counts the crash points reached and fires at ``at``; records the committed moves."""

    at: CrashAt | None = None
    on_fire: Callable[[], None] = lambda: None
    hits: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    #: the committed moves, by the ``what`` given to ``advance``: [(from, to), ...]
    moves: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: exceptions raised by reconcile (other than the crash)
    errors: list[str] = field(default_factory=list)
    fired: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, label: str) -> None:
        with self.lock:
            self.hits.append(label)
            self.counts[label] += 1
            fire = (
                self.at is not None
                and not self.fired.is_set()
                and (label, self.counts[label]) == (self.at.label, self.at.occurrence)
            )
            if fire:
                self.fired.set()
        if fire:
            self.on_fire()
            raise Crash(label)

    def committed(self, what: str, current: str, new: str) -> None:
        with self.lock:
            self.moves.setdefault(what, []).append((current, new))


_armed: Crasher | None = None


def point(label: str) -> None:
    """A crash point in a controller's own code; nothing happens unless the suite runs."""
    if _armed is not None:
        _armed.hit(label)


@contextmanager
def instrument(machines: Sequence[StateMachine], crasher: Crasher) -> Iterator[Crasher]:
    """Make every move of ``machines`` (and every :func:`point`) a crash point of ``crasher``."""
    global _armed
    saved = {id(m): m.__dict__.get("advance") for m in machines}

    def wrap(machine: StateMachine) -> Callable[..., None]:
        original = type(machine).advance

        def advance(row: HasState, new: str, *, what: str) -> None:
            current = row.state
            label = f"{machine.name} {current}->{new}"
            machine.check(current, new, what=what)  # an illegal move is no crash point
            crasher.hit(f"{label} (in its transaction)")
            original(machine, row, new, what=what)
            session = object_session(row)
            if session is None:  # not a database row: counts as committed at once
                crasher.committed(what, current, new)
                crasher.hit(f"{label} (committed)")
                return

            def after_commit(_session: Session) -> None:
                crasher.committed(what, current, new)
                crasher.hit(f"{label} (committed)")

            event.listen(session, "after_commit", after_commit, once=True)

        return advance

    for machine in machines:
        machine.advance = wrap(machine)  # type: ignore[method-assign]
    _armed = crasher
    try:
        yield crasher
    finally:
        _armed = None
        for machine in machines:
            if saved[id(machine)] is None:
                del machine.__dict__["advance"]
            else:
                machine.advance = saved[id(machine)]  # type: ignore[method-assign]


def halt(controller: Controller) -> None:
    """Stop ``controller``'s threads without releasing its lease (what a crash leaves)."""
    controller._kit_stopping.set()
    controller._kit_tick.set()
    with controller._kit_cond:
        controller._kit_cond.notify_all()


def _join(controller: Controller) -> None:
    for thread in controller._kit_threads:
        thread.join(WAIT)
        assert not thread.is_alive(), f"{thread.name} did not stop after the crash"


def _guard(controller: Controller, crasher: Crasher) -> None:
    """Swallow the crash in the worker it hit (as a dead process would say nothing more) and
    record every other exception a reconcile raises."""
    original = controller.reconcile

    def reconcile(key: str) -> float | None:
        try:
            return original(key)
        except Crash:
            return None
        except Exception as exc:
            with crasher.lock:
                crasher.errors.append(f"reconcile({key!r}) raised {exc!r}")
            raise

    controller.reconcile = reconcile  # type: ignore[method-assign]


def _final(subject: Subject, state: str) -> bool:
    return any(state in m.final for m in subject.machines)


def _converge(subject: Subject, db: Database, crasher: Crasher, *, allow_errors: bool) -> None:
    """Run a new instance (it takes over once the lease lapses) until every item is final."""
    controller = subject.controller(db, lease_s=LEASE_S)
    _guard(controller, crasher)
    controller.start()
    try:
        deadline = time.monotonic() + WAIT
        while True:
            if crasher.errors and not allow_errors:
                raise AssertionError(f"the restarted controller failed: {crasher.errors}")
            states = subject.states(db)
            if all(_final(subject, s) for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not every item reached a final state: {dict(states)}")
            time.sleep(0.02)
    finally:
        controller.stop()


def _lease_holder(db: Database, name: str) -> str | None:
    with db.transaction(write=False) as session:
        return session.scalar(
            select(ControllerLeaseRow.holder).where(ControllerLeaseRow.name == name)
        )


@dataclass
class Result:
    """What a run left: every item's state, the side effects made, the committed moves."""

    states: dict[str, str]
    launches: list[Hashable]
    abandoned: list[Hashable]
    moves: dict[str, list[tuple[str, str]]]
    hits: list[str]


def _result(subject: Subject, db: Database, crasher: Crasher) -> Result:
    return Result(
        dict(subject.states(db)),
        list(subject.launches(db)),
        list(subject.abandoned(db)),
        dict(crasher.moves),
        crasher.hits,
    )


def discover(subject: Subject, db: Database, *, allow_errors: bool = False) -> list[str]:
    """Run without a crash; the distinct crash points reached, in first-reached order."""
    subject.setup(db)
    crasher = Crasher()
    with instrument(subject.machines, crasher):
        _converge(subject, db, crasher, allow_errors=allow_errors)
    check_converged(subject, _result(subject, db, crasher))
    return list(dict.fromkeys(crasher.hits))


def crash_and_restart(
    subject: Subject, db: Database, at: CrashAt, *, allow_errors: bool = False
) -> Result:
    """Crash an instance at ``at`` (in this process), then converge with a new one."""
    subject.setup(db)
    crasher = Crasher(at)
    with instrument(subject.machines, crasher):
        first = subject.controller(db, lease_s=LEASE_S)
        crasher.on_fire = lambda: halt(first)
        _guard(first, crasher)
        first.start()
        try:
            if not crasher.fired.wait(WAIT):
                raise AssertionError(f"the crash point {at} was never reached")
            _join(first)
            # Not released: the next instance must wait for it to lapse and take over.
            assert _lease_holder(db, subject.name) == first.lease.holder
            if crasher.errors and not allow_errors:
                raise AssertionError(f"the controller failed before the crash: {crasher.errors}")
            _converge(subject, db, crasher, allow_errors=allow_errors)
        finally:
            halt(first)
            first.close()
    return _result(subject, db, crasher)


_KILLED = """
import os, signal, sys
sys.path[:0] = sys.argv[1].split(os.pathsep)
import importlib
import controller_conformance as cc
from modelyard.core.db import Database

module_name, _, class_name = sys.argv[2].partition(":")
subject = getattr(importlib.import_module(module_name), class_name)()
db = Database(sys.argv[3])
at = cc.CrashAt(sys.argv[4], int(sys.argv[5]))
crasher = cc.Crasher(at, on_fire=lambda: os.kill(os.getpid(), signal.SIGKILL))
with cc.instrument(subject.machines, crasher):
    controller = subject.controller(db, lease_s=float(sys.argv[6]))
    controller.start()
    crasher.fired.wait(120)
sys.exit(3)  # never reached the point
"""


def kill_and_restart(
    subject: Subject,
    subject_ref: str,
    path: Sequence[Path],
    db: Database,
    db_url: str,
    at: CrashAt,
    *,
    allow_errors: bool = False,
) -> Result:
    """Run the controller in a child process that SIGKILLs itself at ``at``, then converge
    with a new instance here. ``subject_ref`` is ``"module:Class"`` (built with no
    arguments in the child), importable from the folders ``path``."""
    subject.setup(db)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED,
            os.pathsep.join(str(p) for p in [REPO / "tests", *path]),
            subject_ref,
            db_url,
            at.label,
            str(at.occurrence),
            str(LEASE_S),
        ],
        cwd=REPO,
        capture_output=True,
        timeout=WAIT * 2,
    )
    assert child.returncode == -signal.SIGKILL, (
        f"the child ended {child.returncode} instead of being killed at {at}:\n"
        + child.stderr.decode(errors="replace")[-3000:]
    )
    assert _lease_holder(db, subject.name) is not None  # a killed process releases nothing
    crasher = Crasher()
    with instrument(subject.machines, crasher):
        _converge(subject, db, crasher, allow_errors=allow_errors)
    return _result(subject, db, crasher)


def check_converged(subject: Subject, result: Result) -> None:
    """One final state per item, no side effect twice, and the outcome of a clean run."""
    not_final = {k: s for k, s in result.states.items() if not _final(subject, s)}
    assert not not_final, f"items not in a final state: {not_final}"
    twice = {k: n for k, n in Counter(result.launches).items() if n > 1}
    assert not twice, f"side effects made more than once: {twice}"
    assert not result.abandoned, f"side effects never taken up: {result.abandoned}"
    for what, moves in result.moves.items():
        for (_, to), (frm, _) in itertools.pairwise(moves):
            assert to == frm, f"{what} moved {moves}: not one path"
        finals = [to for _, to in moves if _final(subject, to)]
        assert len(finals) <= 1, f"{what} reached a final state more than once: {moves}"
    expected = subject.expected()
    if expected is not None:
        states, launches = expected
        assert result.states == dict(states), "final states differ from a run without crashes"
        assert sorted(map(repr, result.launches)) == sorted(map(repr, launches)), (
            f"launches {result.launches} differ from a run without crashes: {list(launches)}"
        )


def assert_covers(machine: StateMachine, labels: Sequence[str], *, except_: Any = ()) -> None:
    """Every edge of ``machine`` (but ``except_``) is among the crash points ``labels``."""
    walked = {
        tuple(label.split(" ", 1)[1].split(" (", 1)[0].split("->"))
        for label in labels
        if label.startswith(f"{machine.name} ")
    }
    missing = [e for e in machine.edges() if e not in walked and e not in set(except_)]
    assert not missing, f"no run walks these {machine.name} moves: {missing}"
