"""The office view's queries (edge_bridge/queries/office.py) with two schools in one database:
each answers with its own school's records only, and on that school's local days.

School 1 is the fixture school (Europe/Berlin), school 2 "Schule Nord" (America/New_York,
tests/support/office_nord.py). At `INSTANT` the two are on different calendar days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from edge_bridge.errors import NotFoundError
from edge_bridge.models import ProcessedScan, Visit
from edge_bridge.occupancy import present_by_room
from edge_bridge.queries import SchoolScope
from edge_bridge.queries.office import attendance_for_day, occupancy_for_day, readers_with_scans
from tests.support import office_nord as nord

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo(nord.NORD_TIMEZONE)
SCHOOL_1 = SchoolScope(1, BERLIN)
SCHOOL_2 = SchoolScope(nord.NORD, NEW_YORK)
# 03:00 UTC on 2 December: 04:00 on the 2nd in Berlin, 22:00 on the 1st in New York.
INSTANT = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
DEC_1, DEC_2 = date(2026, 12, 1), date(2026, 12, 2)
MAX_1, HOMEWORK_1, RAUM_101_1 = 401, 124, 1  # school 1: Max Muster, Hausaufgaben in Raum 101


@pytest.fixture
def two_schools(school_engine: Engine) -> Engine:
    nord.import_nord(school_engine)
    return school_engine


def _visit(
    engine: Engine, student_id: int, group_id: int, entry: datetime, exit_: datetime | None
) -> None:
    with Session(engine) as session:
        session.add(
            Visit(
                student_id=student_id,
                active_group_id=group_id,
                entry_time=entry,
                exit_time=exit_,
                entry_source="rfid",
                entry_device_id="reader-101",
            )
        )
        session.commit()


def _same_instant_in_both_schools(engine: Engine) -> None:
    """Both "Max Muster"s enter their school's "Raum 101" at `INSTANT`."""
    _visit(engine, MAX_1, HOMEWORK_1, INSTANT, INSTANT + timedelta(hours=1))
    _visit(engine, nord.MAX, nord.FOOTBALL, INSTANT, INSTANT + timedelta(hours=1))


def test_each_school_reads_the_same_instant_on_its_own_local_day(two_schools: Engine) -> None:
    _same_instant_in_both_schools(two_schools)

    with Session(two_schools) as session:
        nord_dec_1 = attendance_for_day(session, SCHOOL_2, day=DEC_1)
        nord_dec_2 = attendance_for_day(session, SCHOOL_2, day=DEC_2)
        school_dec_1 = attendance_for_day(session, SCHOOL_1, day=DEC_1)
        school_dec_2 = attendance_for_day(session, SCHOOL_1, day=DEC_2)

    assert [record.student_id for record in nord_dec_1] == [nord.MAX]
    assert nord_dec_2 == []
    assert school_dec_1 == []
    assert [record.student_id for record in school_dec_2] == [MAX_1]


def test_a_schools_record_names_only_its_own_children_rooms_and_home_groups(
    two_schools: Engine,
) -> None:
    _same_instant_in_both_schools(two_schools)
    _visit(two_schools, nord.NORA, nord.NORDLAUF, INSTANT, None)

    with Session(two_schools) as session:
        [school] = attendance_for_day(session, SCHOOL_1, day=DEC_2)
        nord_records = attendance_for_day(session, SCHOOL_2, day=DEC_1)

    assert (school.student_id, school.ogs_group_id) == (MAX_1, 7)
    assert [stay.room_id for stay in school.stays] == [RAUM_101_1]
    assert [(r.student_id, r.ogs_group_name) for r in nord_records] == [
        (nord.MAX, "Klasse 2b"),
        (nord.NORA, "Klasse Nord"),
    ]
    assert {stay.room_id for r in nord_records for stay in r.stays} == {
        nord.ROOM_101,
        nord.NORDFLUR,
    }


@pytest.mark.parametrize(
    ("scope", "filters"),
    [
        (SCHOOL_1, {"ogs_group_id": nord.KLASSE_2B}),
        (SCHOOL_1, {"room_id": nord.ROOM_101}),
        (SCHOOL_2, {"ogs_group_id": 7}),
        (SCHOOL_2, {"room_id": RAUM_101_1}),
        (SCHOOL_1, {"room_id": 999}),  # the missing id: the same answer
    ],
)
def test_a_filter_naming_another_schools_group_or_room_is_not_found(
    two_schools: Engine, scope: SchoolScope, filters: dict[str, int]
) -> None:
    _same_instant_in_both_schools(two_schools)

    with Session(two_schools) as session, pytest.raises(NotFoundError) as caught:
        attendance_for_day(session, scope, day=DEC_1, **filters)

    assert caught.value.status_code == 404
    assert str(caught.value).endswith(f"{next(iter(filters.values()))} not found")


def test_filters_of_the_own_school_still_apply(two_schools: Engine) -> None:
    _same_instant_in_both_schools(two_schools)
    _visit(two_schools, nord.NORA, nord.NORDLAUF, INSTANT, None)

    with Session(two_schools) as session:
        by_group = attendance_for_day(session, SCHOOL_2, day=DEC_1, ogs_group_id=nord.KLASSE_NORD)
        by_room = attendance_for_day(session, SCHOOL_2, day=DEC_1, room_id=nord.ROOM_101)

    assert [record.student_id for record in by_group] == [nord.NORA]
    assert [record.student_id for record in by_room] == [nord.MAX]


def test_occupancy_lists_only_the_schools_rooms_from_its_local_midnight(
    two_schools: Engine,
) -> None:
    _same_instant_in_both_schools(two_schools)
    _visit(two_schools, nord.NORA, nord.NORDLAUF, INSTANT, None)
    now = INSTANT + timedelta(minutes=30)

    with Session(two_schools) as session:
        nord_rooms = occupancy_for_day(session, SCHOOL_2, day=DEC_1, now=now)
        school_rooms = occupancy_for_day(session, SCHOOL_1, day=DEC_2, now=now)
        nord_open = present_by_room(session, school_id=nord.NORD)
        school_open = present_by_room(session, school_id=1)

    assert [room.room_id for room in nord_rooms] == [nord.ROOM_101, nord.NORDFLUR]
    assert [room.room_id for room in school_rooms] == [1, 2, 3]
    midnight_new_york = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
    assert nord_rooms[0].points == [(midnight_new_york, 0), (INSTANT, 1), (now, 1)]
    assert school_rooms[0].points[0] == (datetime(2026, 12, 1, 23, 0, tzinfo=UTC), 0)
    assert [room.present for room in nord_rooms] == [1, 1]
    assert [room.present for room in school_rooms] == [1, 0, 0]
    assert (nord_open, school_open) == ({nord.NORDFLUR: 1}, {})  # open visits: only Nora's


def _scan(engine: Engine, device_id: str, scan_id: str, at: datetime) -> None:
    with Session(engine) as session:
        session.add(
            ProcessedScan(
                device_id=device_id,
                scan_id=scan_id,
                result="checked_in",
                message="ok",
                scanned_at=at,
                processed_at=at,
            )
        )
        session.commit()


def test_readers_are_the_schools_own_with_scans_since_its_local_midnight(
    two_schools: Engine,
) -> None:
    # 06:00 UTC on 1 December: today in New York at INSTANT, yesterday in Berlin.
    early = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    _scan(two_schools, "nord-101", "1", early)
    _scan(two_schools, "reader-101", "1", early)
    _scan(two_schools, "reader-101", "2", INSTANT - timedelta(hours=1))  # 03:00 in Berlin

    with Session(two_schools) as session:
        nord_readers = readers_with_scans(session, SCHOOL_2, now=INSTANT)
        school_readers = readers_with_scans(session, SCHOOL_1, now=INSTANT)

    assert [reader.device.id for reader in nord_readers] == sorted(nord.DEVICES)
    assert {reader.device.id for reader in school_readers} == {
        "reader-101",
        "reader-turnhalle",
        "reader-mensa",
        "reader-spare",
    }
    nord_scans = {reader.device.id: reader.scans for reader in nord_readers}
    school_scans = {reader.device.id: reader.scans for reader in school_readers}
    assert (nord_scans["nord-101"].scans, nord_scans["nord-101"].last_scan) == (1, early)
    assert school_scans["reader-101"].scans == 1  # only the one after Berlin's midnight
    assert school_scans["reader-101"].last_scan == INSTANT - timedelta(hours=1)
