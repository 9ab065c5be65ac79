"""Rules the database enforces itself, bypassing every service function."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from edge_bridge.models import (
    ActiveGroup,
    Device,
    OgsGroup,
    OgsGroupLeader,
    RfidTag,
    Room,
    School,
    Staff,
    Student,
    Visit,
)

NOW = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)


def test_a_second_open_visit_for_a_student_is_refused_by_the_database(
    school_engine: Engine,
) -> None:
    with Session(school_engine) as session:
        session.add(Visit(student_id=401, active_group_id=123, entry_time=NOW))
        session.commit()
        session.add(Visit(student_id=401, active_group_id=124, entry_time=NOW))

        with pytest.raises(IntegrityError):
            session.commit()


def test_closed_visits_do_not_count_against_the_single_open_visit(school_engine: Engine) -> None:
    with Session(school_engine) as session:
        session.add(Visit(student_id=401, active_group_id=123, entry_time=NOW, exit_time=NOW))
        session.add(Visit(student_id=401, active_group_id=123, entry_time=NOW, exit_time=NOW))
        session.add(Visit(student_id=401, active_group_id=124, entry_time=NOW))
        session.commit()


def test_a_room_cannot_have_two_running_groups(school_engine: Engine) -> None:
    with Session(school_engine) as session:
        session.add(ActiveGroup(school_id=1, name="Malen", room_id=2, started_at=NOW))

        with pytest.raises(IntegrityError, match=r"(?i)unique"):
            session.commit()


def test_a_tag_cannot_belong_to_both_staff_and_student(school_engine: Engine) -> None:
    with Session(school_engine) as session:
        session.add(RfidTag(school_id=1, tag="0BADC0DE", staff_id=4, student_id=401))

        with pytest.raises(IntegrityError):
            session.commit()


def test_times_come_back_as_aware_utc(school_engine: Engine) -> None:
    with Session(school_engine) as session:
        session.add(Visit(student_id=402, active_group_id=123, entry_time=NOW))
        session.commit()
    with Session(school_engine) as session:
        visit = session.get(Visit, 1)
        assert visit is not None
        assert visit.entry_time == NOW
        assert visit.entry_time.tzinfo is not None


# --- schools: every reference stays within one school ------------------------------------------
# School 1 is the fixture school (room 1, home group 7, staff 1 and 4, a student 490 without
# a tag). School 2 gets its own room 50, home group 60, staff member 70 and student 80. Each
# case builds a row of school 2 pointing at school 2's record (accepted) or at school 1's
# (refused, and by the foreign key: no other rule stands in the way).


def _second_school(session: Session) -> None:
    rows: list[SQLModel] = [
        School(id=2, name="Grundschule Am Park"),
        Room(id=50, school_id=2, name="Raum 101"),
        Staff(id=70, school_id=2, name="Frau Park", email="park@example.org"),
        OgsGroup(id=60, school_id=2, name="Klasse 2b", room_id=50),
        Student(id=80, school_id=2, first_name="Max", last_name="Muster", ogs_group_id=60),
        Student(id=490, school_id=1, first_name="Ohne", last_name="Karte", ogs_group_id=7),
    ]
    for row in rows:  # one by one: no relationships tell the session the order
        session.add(row)
        session.flush()
    session.commit()


Row = Callable[[bool], SQLModel]  # own school's record (True) or school 1's (False)
CROSS_SCHOOL_ROWS: dict[str, Row] = {
    "student in a home group": lambda own: Student(
        id=81, school_id=2, first_name="Lea", last_name="Neu", ogs_group_id=60 if own else 7
    ),
    "device in a room": lambda own: Device(id="park-1", school_id=2, room_id=50 if own else 1),
    "tag owned by a student": lambda own: RfidTag(
        school_id=2, tag="04A1B20000", student_id=80 if own else 490
    ),
    "tag owned by a staff member": lambda own: RfidTag(
        school_id=2, tag="A1B2C3D4", staff_id=70 if own else 4
    ),
    "active group in a room": lambda own: ActiveGroup(
        school_id=2, name="Malen", room_id=50 if own else 1, started_at=NOW, ended_at=NOW
    ),
    "home group in a room": lambda own: OgsGroup(
        id=61, school_id=2, name="Klasse 3a", room_id=50 if own else 1
    ),
    "leader of a home group": lambda own: OgsGroupLeader(
        school_id=2, staff_id=70, ogs_group_id=60 if own else 7
    ),
    "home group led by a staff member": lambda own: OgsGroupLeader(
        school_id=2, ogs_group_id=60, staff_id=70 if own else 1
    ),
}


@pytest.mark.parametrize("row", CROSS_SCHOOL_ROWS.values(), ids=CROSS_SCHOOL_ROWS.keys())
def test_a_row_of_one_school_pointing_into_another_is_refused_by_the_database(
    school_engine: Engine, row: Row
) -> None:
    with Session(school_engine) as session:
        _second_school(session)
        session.add(row(False))

        with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            session.commit()


@pytest.mark.parametrize("row", CROSS_SCHOOL_ROWS.values(), ids=CROSS_SCHOOL_ROWS.keys())
def test_the_same_row_pointing_into_its_own_school_is_accepted(
    school_engine: Engine, row: Row
) -> None:
    with Session(school_engine) as session:
        _second_school(session)
        session.add(row(True))
        session.commit()


def test_two_schools_may_hold_the_same_tag_but_one_school_only_once(
    school_engine: Engine,
) -> None:
    with Session(school_engine) as session:
        _second_school(session)
        session.add(RfidTag(school_id=2, tag="04A1B20000", student_id=80))  # school 1's 401 too
        session.commit()
        session.add(RfidTag(school_id=2, tag="04A1B20000", staff_id=70))

        with pytest.raises(IntegrityError, match=r"(?i)unique"):
            session.commit()
