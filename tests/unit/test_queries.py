"""The staff-facing queries (edge_bridge/queries/groups, home_groups, people, rooms) with two
schools in one database: each answers with its scope's school only, and an id of the other
school is not found exactly like a missing id.

School 1 is the fixture school, school 2 "Schule Nord" (tests/support/scoping_schools.py):
the same names and tag values, ids of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from edge_bridge.errors import NotFoundError
from edge_bridge.events import Source
from edge_bridge.queries import SchoolScope
from edge_bridge.queries.groups import (
    get_active_group_summary,
    get_running_group,
    is_supervisor,
    list_active_groups,
    list_present_students,
)
from edge_bridge.queries.home_groups import (
    get_home_group,
    is_leader,
    list_home_groups,
    list_roster,
)
from edge_bridge.queries.people import get_student, list_student_tags, search_students
from edge_bridge.queries.rooms import list_rooms
from edge_bridge.store import Store, Tx
from edge_bridge.visits import check_in, end_activity
from tests.support import scoping_schools as nord

BERLIN = ZoneInfo("Europe/Berlin")
SCHOOL_1 = SchoolScope(1, BERLIN)
SCHOOL_2 = SchoolScope(nord.NORD, BERLIN)
AT = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
SCHMIDT, YILMAZ, NOWAK = 1, 2, 3
FOOTBALL, HOMEWORK = 123, 124  # school 1: Turnhalle (staff 2), Raum 101 (staff 1)
MAX, EMMA = 401, 402  # school 1, home group 7


@pytest.fixture
def two_schools(school_engine: Engine) -> Engine:
    nord.import_nord(school_engine)
    return school_engine


def _check_in(engine: Engine, student_id: int, group_id: int) -> None:
    """A manual check-in, looked up through the student's school."""
    scope = SCHOOL_2 if student_id in nord.NORD_STUDENTS else SCHOOL_1

    def work(tx: Tx) -> None:
        student = get_student(tx.session, scope, student_id=student_id)
        group = get_running_group(tx.session, scope, group_id=group_id)
        check_in(tx, student, group, at=AT, source=Source.MANUAL)

    Store(engine).write_blocking(work)


def _read(engine: Engine, query: Callable[[Session], Any]) -> Any:
    with Session(engine) as session:
        return query(session)


def _not_found(engine: Engine, query: Callable[[Session], Any]) -> str:
    with Session(engine) as session, pytest.raises(NotFoundError) as caught:
        query(session)
    assert caught.value.status_code == 404
    return str(caught.value)


def test_active_groups_are_listed_per_school_with_supervisors_and_head_counts(
    two_schools: Engine,
) -> None:
    _check_in(two_schools, MAX, HOMEWORK)
    _check_in(two_schools, EMMA, HOMEWORK)
    _check_in(two_schools, nord.NORD_MAX, nord.NORD_HOMEWORK)

    with Session(two_schools) as session:
        school_1 = list_active_groups(session, SCHOOL_1)
        school_2 = list_active_groups(session, SCHOOL_2)
        schmidt = list_active_groups(session, SCHOOL_1, supervised_by=SCHMIDT)
        schmidt_in_2 = list_active_groups(session, SCHOOL_2, supervised_by=SCHMIDT)
        nord_schmidt = list_active_groups(session, SCHOOL_2, supervised_by=nord.NORD_SCHMIDT)

    assert [(g.id, g.room_name, g.supervisor_ids, g.student_count) for g in school_1] == [
        (FOOTBALL, "Turnhalle", (YILMAZ,), 0),
        (HOMEWORK, "Raum 101", (SCHMIDT,), 2),
    ]
    assert [(g.id, g.room_id, g.supervisor_ids, g.student_count) for g in school_2] == [
        (nord.NORD_FOOTBALL, 5, (nord.NORD_YILMAZ,), 0),
        (nord.NORD_HOMEWORK, 4, (nord.NORD_SCHMIDT,), 1),
    ]
    assert [g.id for g in schmidt] == [HOMEWORK]
    assert schmidt_in_2 == []
    assert [g.id for g in nord_schmidt] == [nord.NORD_HOMEWORK]


def test_a_group_of_another_school_is_not_found_like_a_missing_or_ended_one(
    two_schools: Engine,
) -> None:
    Store(two_schools).write_blocking(lambda tx: end_activity(tx, FOOTBALL, at=AT))

    messages = {
        group_id: _not_found(
            two_schools, lambda s, g=group_id: get_running_group(s, SCHOOL_1, group_id=g)
        )
        for group_id in [nord.NORD_HOMEWORK, 9999, FOOTBALL]
    }
    summary = _not_found(
        two_schools,
        lambda s: get_active_group_summary(s, SCHOOL_1, group_id=nord.NORD_HOMEWORK),
    )
    own = _read(two_schools, lambda s: get_running_group(s, SCHOOL_2, group_id=nord.NORD_HOMEWORK))

    assert messages == {g: f"Active group {g} not found" for g in messages}
    assert summary == f"Active group {nord.NORD_HOMEWORK} not found"
    assert (own.id, own.school_id) == (nord.NORD_HOMEWORK, nord.NORD)


def test_supervising_counts_only_in_the_groups_own_school(two_schools: Engine) -> None:
    def supervises(scope: SchoolScope, group_id: int, staff_id: int) -> bool:
        return _read(
            two_schools,
            lambda s: is_supervisor(s, scope, group_id=group_id, staff_id=staff_id),
        )

    assert supervises(SCHOOL_1, HOMEWORK, SCHMIDT)
    assert not supervises(SCHOOL_2, HOMEWORK, SCHMIDT)
    assert not supervises(SCHOOL_1, HOMEWORK, YILMAZ)
    assert supervises(SCHOOL_2, nord.NORD_HOMEWORK, nord.NORD_SCHMIDT)
    assert not supervises(SCHOOL_1, nord.NORD_HOMEWORK, nord.NORD_SCHMIDT)


def test_present_students_are_the_groups_children_of_the_scopes_school(
    two_schools: Engine,
) -> None:
    _check_in(two_schools, EMMA, HOMEWORK)
    _check_in(two_schools, MAX, HOMEWORK)
    _check_in(two_schools, nord.NORD_MAX, nord.NORD_HOMEWORK)

    with Session(two_schools) as session:
        homework = list_present_students(session, SCHOOL_1, group_id=HOMEWORK)
        homework_seen_from_2 = list_present_students(session, SCHOOL_2, group_id=HOMEWORK)
        nord_homework = list_present_students(session, SCHOOL_2, group_id=nord.NORD_HOMEWORK)

    assert [(p.student_id, p.student_name, p.entry_time) for p in homework] == [
        (MAX, "Max Muster", AT),  # by last name: Muster before Schulz
        (EMMA, "Emma Schulz", AT),
    ]
    assert homework_seen_from_2 == []
    assert [(p.student_id, p.student_name) for p in nord_homework] == [
        (nord.NORD_MAX, "Max Muster")
    ]


def test_home_groups_and_leaders_are_per_school(two_schools: Engine) -> None:
    with Session(two_schools) as session:
        school_1 = list_home_groups(session, SCHOOL_1)
        school_2 = list_home_groups(session, SCHOOL_2)
        nowak = list_home_groups(session, SCHOOL_1, led_by=NOWAK)
        nowak_in_2 = list_home_groups(session, SCHOOL_2, led_by=NOWAK)
        leads = [
            is_leader(session, SCHOOL_1, group_id=7, staff_id=NOWAK),
            is_leader(session, SCHOOL_2, group_id=7, staff_id=NOWAK),
            is_leader(session, SCHOOL_2, group_id=9, staff_id=nord.NORD_NOWAK),
            is_leader(session, SCHOOL_1, group_id=9, staff_id=nord.NORD_NOWAK),
        ]

    assert [(g.id, g.name, g.room_id, g.room_name) for g in school_1] == [
        (7, "Klasse 2b", 1, "Raum 101"),
        (8, "Klasse 3a", 3, "Mensa"),
    ]
    assert [(g.id, g.name, g.room_id, g.room_name) for g in school_2] == [
        (9, "Klasse 2b", 4, "Raum 101"),
        (10, "Klasse 3a", 6, "Mensa"),
    ]
    assert [g.id for g in nowak] == [7]
    assert nowak_in_2 == []
    assert leads == [True, False, True, False]


def test_a_home_group_of_another_school_is_not_found_like_a_missing_one(
    two_schools: Engine,
) -> None:
    foreign = _not_found(two_schools, lambda s: get_home_group(s, SCHOOL_1, group_id=9))
    missing = _not_found(two_schools, lambda s: get_home_group(s, SCHOOL_1, group_id=999))
    back = _not_found(two_schools, lambda s: get_home_group(s, SCHOOL_2, group_id=7))

    assert (foreign, missing, back) == (
        "Home group 9 not found",
        "Home group 999 not found",
        "Home group 7 not found",
    )
    assert _read(two_schools, lambda s: get_home_group(s, SCHOOL_2, group_id=9)).name == (
        "Klasse 2b"
    )


def test_the_roster_shows_where_each_child_of_the_schools_home_group_is(
    two_schools: Engine,
) -> None:
    _check_in(two_schools, EMMA, FOOTBALL)
    _check_in(two_schools, nord.NORD_MAX, nord.NORD_HOMEWORK)

    with Session(two_schools) as session:
        roster_7 = list_roster(session, SCHOOL_1, group_id=7)
        roster_9 = list_roster(session, SCHOOL_2, group_id=9)
        roster_9_from_1 = list_roster(session, SCHOOL_1, group_id=9)

    assert len(roster_7) == 30
    assert {child.student_id for child in roster_7} <= set(range(401, 461))
    emma = next(child for child in roster_7 if child.student_id == EMMA)
    assert (emma.status, emma.active_group_id, emma.room_name, emma.since) == (
        "present",
        FOOTBALL,
        "Turnhalle",
        AT,
    )
    max_1 = next(child for child in roster_7 if child.student_id == MAX)
    assert (max_1.status, max_1.active_group_id, max_1.room_name, max_1.since) == (
        "away",
        None,
        None,
        None,
    )
    assert [(c.student_id, c.status, c.active_group_id, c.room_name) for c in roster_9] == [
        (nord.NORD_MAX, "present", nord.NORD_HOMEWORK, "Raum 101"),  # Muster
        (463, "away", None, None),  # Neumann
        (462, "away", None, None),  # Schulz
    ]
    assert roster_9_from_1 == []


def test_a_student_of_another_school_is_not_found_like_a_missing_one(
    two_schools: Engine,
) -> None:
    foreign = _not_found(two_schools, lambda s: get_student(s, SCHOOL_1, student_id=nord.NORD_MAX))
    missing = _not_found(two_schools, lambda s: get_student(s, SCHOOL_1, student_id=9999))
    back = _not_found(two_schools, lambda s: get_student(s, SCHOOL_2, student_id=MAX))
    own = _read(two_schools, lambda s: get_student(s, SCHOOL_2, student_id=nord.NORD_MAX))

    assert (foreign, missing, back) == (
        f"Student {nord.NORD_MAX} not found",
        "Student 9999 not found",
        f"Student {MAX} not found",
    )
    assert (own.display_name, own.school_id) == ("Max Muster", nord.NORD)


def test_a_name_search_finds_the_scopes_students_only(two_schools: Engine) -> None:
    with Session(two_schools) as session:
        school_1 = search_students(session, SCHOOL_1, text="max")
        school_2 = search_students(session, SCHOOL_2, text="max")
        both_words = search_students(session, SCHOOL_2, text="MAX mus")
        everyone_2 = search_students(session, SCHOOL_2, limit=500)
        limited = search_students(session, SCHOOL_1, limit=5)

    assert school_1 and {s.student_id for s in school_1} <= set(range(401, 461))
    assert "Max Muster" in {s.student_name for s in school_1}
    assert [(s.student_id, s.student_name, s.ogs_group_id) for s in school_2] == [
        (nord.NORD_MAX, "Max Muster", 9),
        (464, "Max Richter", 10),
    ]
    assert [s.student_id for s in both_words] == [nord.NORD_MAX]
    assert sorted(s.student_id for s in everyone_2) == nord.NORD_STUDENTS
    assert len(limited) == 5


def test_student_tags_are_the_scopes_even_where_two_schools_use_the_same_card(
    two_schools: Engine,
) -> None:
    with Session(two_schools) as session:
        school_1 = list_student_tags(session, SCHOOL_1)
        school_2 = list_student_tags(session, SCHOOL_2)

    assert len(school_1) == 60
    assert {t.student_id for t in school_1} == set(range(401, 461))
    assert [(t.student_id, t.tag) for t in school_2] == [
        (461, "04A1B20000"),
        (462, "04A1B20001"),
        (463, "04A1B20002"),
        (464, "04A1B2001E"),
        (465, "04A1B2001F"),
        (466, "04A1B20020"),
    ]
    by_tag_1 = {t.tag: t.student_id for t in school_1}
    assert by_tag_1["04A1B20000"] == MAX  # the same card number, school 1's child


def test_rooms_are_the_schools_with_their_running_group_and_children_now(
    two_schools: Engine,
) -> None:
    _check_in(two_schools, MAX, HOMEWORK)
    _check_in(two_schools, EMMA, HOMEWORK)
    _check_in(two_schools, nord.NORD_MAX, nord.NORD_FOOTBALL)
    Store(two_schools).write_blocking(lambda tx: end_activity(tx, FOOTBALL, at=AT))

    with Session(two_schools) as session:
        school_1 = list_rooms(session, SCHOOL_1)
        school_2 = list_rooms(session, SCHOOL_2)

    assert [(r.id, r.name, r.active_group_id, r.student_count) for r in school_1] == [
        (1, "Raum 101", HOMEWORK, 2),
        (2, "Turnhalle", None, 0),  # its group ended
        (3, "Mensa", None, 0),
    ]
    assert [(r.id, r.name, r.active_group_id, r.student_count) for r in school_2] == [
        (4, "Raum 101", nord.NORD_HOMEWORK, 0),
        (5, "Turnhalle", nord.NORD_FOOTBALL, 1),
        (6, "Mensa", None, 0),
    ]


def test_an_ended_groups_visits_do_not_count_in_its_room(two_schools: Engine) -> None:
    _check_in(two_schools, MAX, HOMEWORK)
    later = AT + timedelta(hours=1)
    Store(two_schools).write_blocking(lambda tx: end_activity(tx, HOMEWORK, at=later))

    rooms = _read(two_schools, lambda s: list_rooms(s, SCHOOL_1))

    assert (rooms[0].active_group_id, rooms[0].student_count) == (None, 0)
