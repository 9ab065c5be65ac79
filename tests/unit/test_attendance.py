"""The daily attendance record and the occupancy curve, built from visits."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from edge_bridge.day_end import close_day
from edge_bridge.events import Source
from edge_bridge.models import Student
from edge_bridge.occupancy import present_by_room
from edge_bridge.queries import SchoolScope
from edge_bridge.queries.office import attendance_for_day, occupancy_for_day
from edge_bridge.store import Store, Tx
from edge_bridge.visits import Actor, check_in, check_out, running_group

BERLIN = ZoneInfo("Europe/Berlin")
SCHOOL = SchoolScope(1, BERLIN)
DAY = date(2026, 12, 2)
ONE = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # 13:00 in Berlin
READER = Actor(Source.RFID, device_id="reader-101")
SCHMIDT = Actor(Source.MANUAL, staff_id=1)


@pytest.fixture
def store(school_engine: Engine) -> Store:
    return Store(school_engine)


def _in(store: Store, student_id: int, group_id: int, at: datetime, by: Actor) -> None:
    def work(tx: Tx) -> None:
        student = tx.session.get(Student, student_id)
        assert student is not None
        check_in(tx, student, running_group(tx, group_id), at=at, source=by.source, by=by)

    store.write_blocking(work)


def _out(store: Store, student_id: int, group_id: int, at: datetime, by: Actor) -> None:
    def work(tx: Tx) -> None:
        student = tx.session.get(Student, student_id)
        assert student is not None
        check_out(tx, student, group_id, at=at, source=by.source, by=by)

    store.write_blocking(work)


def _record(engine: Engine, **filters: int) -> list:  # type: ignore[type-arg]
    with Session(engine) as session:
        return attendance_for_day(session, SCHOOL, day=DAY, **filters)  # type: ignore[arg-type]


def test_a_childs_day_lists_rooms_in_order_with_who_checked_them_in_and_out(
    school_engine: Engine, store: Store
) -> None:
    _in(store, 401, 124, ONE, READER)  # Raum 101, by the reader
    _in(store, 401, 123, ONE + timedelta(hours=1), SCHMIDT)  # transfer to Turnhalle, manual
    _out(store, 401, 123, ONE + timedelta(hours=2), READER)

    [record] = _record(school_engine)

    assert record.student_name == "Max Muster"
    assert record.ogs_group_name == "Klasse 2b"
    assert record.arrival == ONE
    assert record.departure == ONE + timedelta(hours=2)
    assert [stay.room_name for stay in record.stays] == ["Raum 101", "Turnhalle"]
    assert [stay.exit_reason for stay in record.stays] == ["transfer", "checkout"]
    assert record.checked_in_by.describe() == "Leser reader-101"
    assert record.stays[1].entered_by.describe() == "Frau Schmidt"
    assert record.checked_out_by is not None
    assert record.checked_out_by.device_id == "reader-101"


def test_a_child_still_present_has_no_departure(school_engine: Engine, store: Store) -> None:
    _in(store, 402, 124, ONE, READER)

    [record] = _record(school_engine)

    assert record.present
    assert record.departure is None
    assert record.checked_out_by is None


def test_the_day_end_shows_as_the_reason_of_the_departure(
    school_engine: Engine, store: Store
) -> None:
    _in(store, 402, 124, ONE, READER)
    cutoff = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)
    store.write_blocking(lambda tx: close_day(tx, cutoff=cutoff))

    [record] = _record(school_engine)

    assert record.departure == cutoff
    assert record.departure_reason == "auto_checkout"
    assert record.checked_out_by is not None
    assert record.checked_out_by.describe() == "automatisch"


def test_filters_by_home_group_and_by_a_room_visited(school_engine: Engine, store: Store) -> None:
    _in(store, 401, 124, ONE, READER)  # Klasse 2b, Raum 101
    _in(store, 460, 123, ONE, READER)  # another home group, Turnhalle
    with Session(school_engine) as session:
        other_group = session.get(Student, 460)
    assert other_group is not None and other_group.ogs_group_id != 7

    assert [r.student_id for r in _record(school_engine, ogs_group_id=7)] == [401]
    assert [r.student_id for r in _record(school_engine, room_id=2)] == [460]


def test_a_day_without_visits_is_an_empty_record(school_engine: Engine, store: Store) -> None:
    _in(store, 401, 124, ONE - timedelta(days=1), READER)

    assert _record(school_engine) == []


def test_the_occupancy_curve_steps_with_each_entry_and_exit(
    school_engine: Engine, store: Store
) -> None:
    _in(store, 401, 124, ONE, READER)
    _in(store, 402, 124, ONE + timedelta(minutes=10), READER)
    _out(store, 401, 124, ONE + timedelta(minutes=20), READER)
    now = ONE + timedelta(minutes=30)

    with Session(school_engine) as session:
        rooms = {r.room_id: r for r in occupancy_for_day(session, SCHOOL, day=DAY, now=now)}
        present = present_by_room(session)

    counts = [count for _, count in rooms[1].points]
    assert counts == [0, 1, 2, 1, 1]
    assert rooms[1].points[-1][0] == now
    assert rooms[1].present == present[1] == 1
    assert rooms[2].present == 0 and 2 not in present
