"""The controller kit's conformance suite (tests/controller_conformance.py), on a small
launcher: killed at each transition, restarted, every item ends once, nothing launched twice
or left behind.

The launcher drives items ``Pending → Launching → Running → Succeeded | Failed`` (a failed
attempt goes back to ``Pending`` while attempts are left), making one "launch" per attempt:
a row in ``conformance_launches``, unique per item and attempt, as a process start would
be one side effect per attempt. What keeps it from launching twice after a crash is what a
real controller needs too: the attempt number is committed before the launch, and the
launch is looked for (as a backend is polled) before it is made.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Boolean, Integer, String, UniqueConstraint, delete, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from controller_conformance import (
    CrashAt,
    Subject,
    assert_covers,
    check_converged,
    crash_and_restart,
    discover,
    kill_and_restart,
    point,
)
from modelyard.core.controllers import Controller
from modelyard.core.db import Database
from modelyard.core.states import StateMachine
from modelyard.migrations import upgrade

ITEM = StateMachine(
    "item",
    {
        "Pending": {"Launching"},
        "Launching": {"Running"},
        "Running": {"Succeeded", "Failed", "Pending"},
        "Succeeded": set(),
        "Failed": set(),
    },
)
MAX_ATTEMPTS = 2
# item -> attempts that fail before one succeeds (past MAX_ATTEMPTS: it fails for good)
ITEMS = {"ok": 0, "retried": 1, "doomed": 5}


class Base(DeclarativeBase):
    pass


class ItemRow(Base):
    __tablename__ = "conformance_items"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)


class LaunchRow(Base):
    __tablename__ = "conformance_launches"
    __table_args__ = (UniqueConstraint("item_id", "attempt"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    collected: Mapped[bool] = mapped_column(Boolean, default=False)  # its outcome taken up


class Launcher(Controller):
    """One step per reconcile; the next step is queued at once."""

    name = "test.conformance"

    def keys(self) -> Iterable[str]:
        with self.db.transaction(write=False) as session:
            return list(session.scalars(select(ItemRow.id).where(ItemRow.state.not_in(ITEM.final))))

    def reconcile(self, key: str) -> float | None:
        with self.db.transaction() as session:
            row = session.get(ItemRow, key, with_for_update=True)
            if row is None or row.state in ITEM.final:
                return None
            state, attempt = row.state, row.attempt
            if state == "Pending":
                row.attempt += 1  # committed before the launch it names
                ITEM.advance(row, "Launching", what=f"item {key}")
            elif state == "Running":
                launch = self._launch_of(key, attempt)
                assert launch is not None
                session.execute(
                    update(LaunchRow).where(LaunchRow.id == launch.id).values(collected=True)
                )
                if launch.succeeded:
                    ITEM.advance(row, "Succeeded", what=f"item {key}")
                elif attempt < MAX_ATTEMPTS:
                    ITEM.advance(row, "Pending", what=f"item {key}")
                else:
                    ITEM.advance(row, "Failed", what=f"item {key}")
        if state == "Launching":
            self.launch(key, attempt)
            point("launched")  # made, not yet recorded: the dangerous moment
            with self.db.transaction() as session:
                row = session.get(ItemRow, key, with_for_update=True)
                if row is not None and (row.state, row.attempt) == ("Launching", attempt):
                    ITEM.advance(row, "Running", what=f"item {key}")
        self.enqueue(key)
        return None

    def _launch_of(self, key: str, attempt: int) -> LaunchRow | None:
        with self.db.transaction(write=False) as session:
            found = session.scalars(
                select(LaunchRow).where(LaunchRow.item_id == key, LaunchRow.attempt == attempt)
            ).first()
            if found is not None:
                session.expunge(found)
            return found

    def launch(self, key: str, attempt: int) -> None:
        """The side effect, made once per attempt: looked for first, as a backend is polled."""
        if self._launch_of(key, attempt) is not None:
            return
        self.make_launch(key, attempt)

    def make_launch(self, key: str, attempt: int) -> None:
        with self.db.transaction() as session:
            failures = session.get(ItemRow, key)
            assert failures is not None
            session.add(
                LaunchRow(item_id=key, attempt=attempt, succeeded=attempt > failures.failures)
            )


class LauncherSubject:
    """The launcher, as the conformance suite sees it."""

    name = Launcher.name
    machines: Sequence[StateMachine] = (ITEM,)
    controller_class: type[Launcher] = Launcher

    def setup(self, db: Database) -> None:
        Base.metadata.create_all(db.engine)
        with db.transaction() as session:
            session.execute(delete(LaunchRow))
            session.execute(delete(ItemRow))
            for key, failures in ITEMS.items():
                session.add(ItemRow(id=key, state="Pending", attempt=0, failures=failures))

    def controller(self, db: Database, *, lease_s: float) -> Controller:
        return self.controller_class(db, workers=2, lease_s=lease_s)

    def states(self, db: Database) -> Mapping[str, str]:
        with db.transaction(write=False) as session:
            return {r.id: r.state for r in session.scalars(select(ItemRow))}

    def launches(self, db: Database) -> Sequence[Hashable]:
        with db.transaction(write=False) as session:
            rows = session.execute(select(LaunchRow.item_id, LaunchRow.attempt)).all()
            return [(item, attempt) for item, attempt in rows]

    def abandoned(self, db: Database) -> Sequence[Hashable]:
        with db.transaction(write=False) as session:
            rows = session.execute(
                select(LaunchRow.item_id, LaunchRow.attempt).where(LaunchRow.collected.is_(False))
            ).all()
            return [(item, attempt) for item, attempt in rows]

    def expected(self) -> tuple[Mapping[str, str], Sequence[Hashable]]:
        states = {k: "Succeeded" if f < MAX_ATTEMPTS else "Failed" for k, f in ITEMS.items()}
        launches = [
            (k, a) for k, f in ITEMS.items() for a in range(1, min(f + 1, MAX_ATTEMPTS) + 1)
        ]
        return states, launches


_: type[Subject] = LauncherSubject  # it satisfies the protocol


def _moves(*edges: str) -> list[str]:
    return [f"item {e} ({when})" for e in edges for when in ("in its transaction", "committed")]


POINTS = [
    *_moves("Pending->Launching"),
    "launched",
    *_moves("Launching->Running", "Running->Succeeded", "Running->Pending", "Running->Failed"),
]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    upgrade(database.engine)
    yield database
    database.dispose()


def test_the_crash_points_are_every_move_of_the_machine_and_the_launch(db: Database) -> None:
    found = discover(LauncherSubject(), db)
    assert sorted(found) == sorted(POINTS)
    assert_covers(ITEM, found)


@pytest.mark.parametrize("label", POINTS)
def test_a_crash_at_each_point_ends_every_item_once_without_a_second_launch(
    db: Database, label: str
) -> None:
    subject = LauncherSubject()
    check_converged(subject, crash_and_restart(subject, db, CrashAt(label)))


@pytest.mark.parametrize("label", ["launched", "item Running->Pending (committed)"])
def test_a_controller_process_killed_at_a_point_is_taken_over(
    db: Database, db_url: str, label: str
) -> None:
    subject = LauncherSubject()
    here = Path(__file__).parent
    result = kill_and_restart(
        subject, f"{Path(__file__).stem}:LauncherSubject", [here], db, db_url, CrashAt(label)
    )
    check_converged(subject, result)


# The suite must catch what it is for: two broken launchers, each failing it.


class ForgetfulLauncher(Launcher):
    """Relaunches an attempt it finds Launching under a new number (it does not look)."""

    def reconcile(self, key: str) -> float | None:
        with self.db.transaction() as session:
            row = session.get(ItemRow, key, with_for_update=True)
            if row is not None and row.state == "Launching" and self._launch_of(key, row.attempt):
                row.attempt += 1  # "a fresh attempt": the launch made before the crash is lost
        return super().reconcile(key)


class BlindLauncher(Launcher):
    """Launches without looking for the launch made before the crash."""

    def launch(self, key: str, attempt: int) -> None:
        self.make_launch(key, attempt)


class ForgetfulSubject(LauncherSubject):
    controller_class = ForgetfulLauncher


class BlindSubject(LauncherSubject):
    controller_class = BlindLauncher


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        (ForgetfulSubject(), "side effects never taken up"),
        (BlindSubject(), "the restarted controller failed: .*IntegrityError"),
    ],
    ids=["relaunch-under-a-new-attempt", "relaunch-the-same-attempt"],
)
def test_the_suite_fails_a_controller_that_launches_twice(
    db: Database, subject: LauncherSubject, message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        check_converged(subject, crash_and_restart(subject, db, CrashAt("launched")))
