"""The office view with two schools in one deployment: each school's admin sees the
attendance record, occupancy and readers of their own school only, on their school's days.

School 1 is the fixture school (Europe/Berlin); school 2 "Schule Nord" (America/New_York,
tests/support/office_nord.py) shares some of its names and tag values, not its ids.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.engine import Engine

from edge_bridge.models import utcnow
from edge_bridge.schoolday import day_bounds, local_day
from tests.integration.conftest import System
from tests.support import office_nord as nord

pytestmark = pytest.mark.integration

SCHMIDT, ADMIN, HOMEWORK = 1, 4, 124  # school 1: supervisor of 124 (Raum 101), the admin
SCHOOL_1_DEVICES = ["reader-101", "reader-mensa", "reader-spare", "reader-turnhalle"]
SCHOOL_1_CHILDREN = {"401": "Max Muster", "402": "Emma Schulz"}
NORD_CHILDREN = {str(nord.MAX): "Max Muster", str(nord.NORA): "Nora Nordlicht"}
MISSING = 999_999


@pytest.fixture
def two_schools(make_system: Callable[..., System], school_engine: Engine) -> System:
    """A running bridge on both schools, with two children checked in at each."""
    nord.import_nord(school_engine)
    system = make_system()
    check_ins = [
        (SCHMIDT, 1, HOMEWORK, 401),
        (SCHMIDT, 1, HOMEWORK, 402),
        (nord.SUPERVISOR, nord.NORD, nord.FOOTBALL, nord.MAX),
        (nord.SUPERVISOR, nord.NORD, nord.NORDLAUF, nord.NORA),
    ]
    with system.http() as http:
        for staff_id, school_id, group_id, student_id in check_ins:
            answer = http.post(
                f"/api/active/groups/{group_id}/visits",
                json={"student_id": student_id},
                headers=system.auth(staff_id, school_id=school_id),
            )
            assert answer.status_code == 201, answer.text
    return system


def _nord_admin(system: System) -> dict[str, str]:
    return system.auth(nord.ADMIN, school_id=nord.NORD, admin=True)


def _office(system: System, headers: dict[str, str]) -> dict[str, httpx.Response]:
    with system.http() as http:
        return {
            path: http.get(path, headers=headers)
            for path in [
                "/api/attendance",
                "/api/attendance?format=csv",
                "/api/occupancy",
                "/api/devices",
            ]
        }


def _csv_children(answer: httpx.Response) -> list[str]:
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig")), delimiter=";"))
    return sorted(row[1] for row in rows[1:])


def test_a_school_1_admin_sees_no_child_room_or_reader_of_school_2(two_schools: System) -> None:
    answers = _office(two_schools, two_schools.auth(ADMIN))

    assert all(answer.status_code == 200 for answer in answers.values()), answers
    attendance = answers["/api/attendance"].json()
    assert {r["student_id"]: r["student_name"] for r in attendance} == SCHOOL_1_CHILDREN
    assert {stay["room_id"] for r in attendance for stay in r["stays"]} == {"1"}
    assert _csv_children(answers["/api/attendance?format=csv"]) == sorted(
        SCHOOL_1_CHILDREN.values()
    )
    occupancy = answers["/api/occupancy"].json()
    assert [room["room_id"] for room in occupancy["rooms"]] == ["1", "2", "3"]
    assert occupancy["timezone"] == "Europe/Berlin"
    assert [device["id"] for device in answers["/api/devices"].json()] == SCHOOL_1_DEVICES
    for path, answer in answers.items():
        leaked = [marker for marker in nord.MARKERS if marker in answer.text]
        assert leaked == [], path


def test_school_2s_admin_sees_only_school_2_on_new_york_days(two_schools: System) -> None:
    before = utcnow()
    answers = _office(two_schools, _nord_admin(two_schools))
    after = utcnow()

    assert all(answer.status_code == 200 for answer in answers.values()), answers
    attendance = answers["/api/attendance"].json()
    assert {r["student_id"]: r["student_name"] for r in attendance} == NORD_CHILDREN
    assert {stay["room_id"] for r in attendance for stay in r["stays"]} == {
        str(nord.ROOM_101),
        str(nord.NORDFLUR),
    }
    assert _csv_children(answers["/api/attendance?format=csv"]) == sorted(NORD_CHILDREN.values())
    occupancy = answers["/api/occupancy"].json()
    assert [room["room_id"] for room in occupancy["rooms"]] == [
        str(nord.ROOM_101),
        str(nord.NORDFLUR),
    ]
    assert [room["present"] for room in occupancy["rooms"]] == [1, 1]
    new_york = ZoneInfo(nord.NORD_TIMEZONE)
    assert occupancy["timezone"] == nord.NORD_TIMEZONE
    today = {local_day(before, new_york), local_day(after, new_york)}  # a midnight between
    assert {occupancy["date"]} <= {day.isoformat() for day in today}
    midnight, _ = day_bounds(datetime.fromisoformat(occupancy["date"]).date(), new_york)
    first_point = occupancy["rooms"][0]["points"][0]
    assert datetime.fromisoformat(first_point["t"].replace("Z", "+00:00")) == midnight
    assert [device["id"] for device in answers["/api/devices"].json()] == nord.DEVICES
    assert not any("reader-" in answer.text for answer in answers.values())


def _school_1_admin(system: System) -> dict[str, str]:
    return system.auth(ADMIN)


@pytest.mark.parametrize(
    ("who", "kind", "foreign_id"),
    [
        (_school_1_admin, "group", nord.KLASSE_2B),
        (_school_1_admin, "group", nord.KLASSE_NORD),
        (_school_1_admin, "room", nord.ROOM_101),
        (_nord_admin, "group", 7),
        (_nord_admin, "room", 1),
    ],
)
@pytest.mark.parametrize("csv_format", [False, True])
def test_a_filter_naming_another_schools_group_or_room_answers_like_a_missing_id(
    two_schools: System,
    who: Callable[[System], dict[str, str]],
    kind: str,
    foreign_id: int,
    csv_format: bool,
) -> None:
    suffix = "&format=csv" if csv_format else ""
    with two_schools.http() as http:
        foreign = http.get(f"/api/attendance?{kind}={foreign_id}{suffix}", headers=who(two_schools))
        missing = http.get(f"/api/attendance?{kind}={MISSING}{suffix}", headers=who(two_schools))

    assert (foreign.status_code, missing.status_code) == (404, 404)
    assert foreign.json()["detail"] == missing.json()["detail"].replace(
        str(MISSING), str(foreign_id)
    )


def test_a_schools_own_filters_still_narrow_its_record(two_schools: System) -> None:
    with two_schools.http() as http:
        by_group = http.get(
            f"/api/attendance?group={nord.KLASSE_NORD}", headers=_nord_admin(two_schools)
        )
        by_room = http.get(
            f"/api/attendance?room={nord.ROOM_101}", headers=_nord_admin(two_schools)
        )

    assert [record["student_id"] for record in by_group.json()] == [str(nord.NORA)]
    assert [record["student_id"] for record in by_room.json()] == [str(nord.MAX)]
