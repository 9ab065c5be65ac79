"""End of day: `close_day` closes what began before the day end, once, with events; each
school at the day end of its own time zone."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from edge_bridge.day_end import DayEnd, close_day
from edge_bridge.events import EventType, Source
from edge_bridge.models import Student, Visit
from edge_bridge.store import Store
from edge_bridge.visits import Actor, check_in, running_group
from edge_ops.importer import import_data
from tests.factories import AnnouncingWriter, RecordingBroadcaster

BERLIN = ZoneInfo("Europe/Berlin")
SIX_PM = time(18, 0)


def _check_in(
    store: Store | AnnouncingWriter, student_id: int, group_id: int, at: datetime
) -> None:
    def work(tx):  # type: ignore[no-untyped-def]
        student = tx.session.get(Student, student_id)
        check_in(
            tx,
            student,
            running_group(tx, group_id),
            at=at,
            source=Source.RFID,
            by=Actor(Source.RFID, device_id="reader-101"),
        )

    store.write_blocking(work)


def test_close_day_closes_every_visit_begun_before_the_cutoff_once(school_engine: Engine) -> None:
    broadcaster = RecordingBroadcaster()
    store = AnnouncingWriter(Store(school_engine), broadcaster)
    cutoff = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)
    _check_in(store, 401, 124, cutoff - timedelta(hours=3))
    _check_in(store, 402, 123, cutoff - timedelta(hours=1))
    _check_in(store, 403, 124, cutoff + timedelta(minutes=1))  # after the day end: stays open
    broadcaster.events.clear()

    closed = store.write_blocking(lambda tx: close_day(tx, cutoff=cutoff))
    again = store.write_blocking(lambda tx: close_day(tx, cutoff=cutoff))

    assert closed == [401, 402]
    assert again == []
    with Session(school_engine) as session:
        visits = {v.student_id: v for v in session.exec(select(Visit)).all()}
    assert visits[401].exit_time == cutoff and visits[401].exit_reason == "auto_checkout"
    assert visits[402].exit_source == "automated"
    assert visits[403].exit_time is None
    checkouts = [e for e in broadcaster.events if e.type is EventType.STUDENT_CHECKOUT]
    assert [(e.data["student_id"], e.data["source"]) for e in checkouts] == [
        ("401", "automated"),
        ("402", "automated"),
    ]
    assert checkouts[0].route_ogs_group_id == 7  # the home-group leader hears of it
    [occupancy] = [e for e in broadcaster.events if e.type is EventType.OCCUPANCY]
    assert occupancy.route_admin  # the office view learns the rooms emptied
    assert {room["room_id"]: room["student_count"] for room in occupancy.data["rooms"]} == {
        "1": 1,  # 403 stays in Raum 101
        "2": 0,
    }


def test_a_check_in_the_next_day_succeeds_after_the_day_was_closed(school_engine: Engine) -> None:
    store = Store(school_engine)
    cutoff = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)
    _check_in(store, 401, 124, cutoff - timedelta(hours=2))
    store.write_blocking(lambda tx: close_day(tx, cutoff=cutoff))

    _check_in(store, 401, 124, cutoff + timedelta(hours=16))

    with Session(school_engine) as session:
        open_visits = session.exec(
            select(Visit).where(Visit.student_id == 401, col(Visit.exit_time).is_(None))
        ).all()
    assert [v.entry_time for v in open_visits] == [cutoff + timedelta(hours=16)]


def test_a_day_end_woken_a_hair_early_still_closes_that_day(school_engine: Engine) -> None:
    store = Store(school_engine)
    due = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)  # 18:00 in Berlin
    _check_in(store, 401, 124, due - timedelta(hours=2))
    times = iter([due - timedelta(seconds=30), due - timedelta(microseconds=1)])
    closed: list[tuple[int, datetime]] = []

    class Done(Exception):
        pass

    async def sleep(_seconds: float) -> None:
        if any(cutoff == due for _school, cutoff in closed):
            raise Done  # the loop came round again after the day end: stop it

    day_end = DayEnd(store, tz=BERLIN, day_end=time(18, 0), clock=lambda: next(times), sleep=sleep)
    original_close = day_end.close

    async def close(cutoff: datetime, *, school_id: int) -> list[int]:
        closed.append((school_id, cutoff))
        return await original_close(cutoff, school_id=school_id)

    day_end.close = close  # type: ignore[method-assign]

    async def scenario() -> None:
        with contextlib.suppress(Done):
            async with asyncio.timeout(5):
                await day_end.run()

    asyncio.run(scenario())
    store.close()

    assert closed == [(1, due - timedelta(days=1)), (1, due)]  # yesterday's, on the first wake
    with Session(school_engine) as session:
        visit = session.exec(select(Visit).where(Visit.student_id == 401)).one()
    assert visit.exit_time == due and visit.exit_reason == "auto_checkout"


# --- two schools, two time zones -------------------------------------------------------------

Closed = dict[int, list[int]]  # school id → students whose visits a catch-up closed
BERLIN_DAY_END = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)  # 18:00 in Berlin (school 1)
NEW_YORK_DAY_END = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)  # 18:00 in New York (school 2)


@pytest.fixture
def two_zones(school_engine: Engine) -> Engine:
    """School 1 (no time zone of its own: SCHOOL_TIMEZONE Berlin) and school 2 in New York,
    each with one child checked in at 15:00 UTC."""
    document = {
        "school": {"id": 2, "name": "Schule Nord", "timezone": "America/New_York"},
        "rooms": [{"id": 21, "name": "Nordraum"}],
        "students": [{"id": 501, "first_name": "Lina", "last_name": "Berg", "tag": "04A1B2F00D"}],
        "devices": [{"id": "reader-nord-1", "room_id": 21, "active": True}],
        "active_groups": [{"id": 223, "name": "Lesen", "room_id": 21, "supervisor_ids": []}],
    }
    import_data(school_engine, json.dumps(document).encode())
    store = Store(school_engine)
    _check_in(store, 401, 124, datetime(2026, 12, 2, 15, 0, tzinfo=UTC))
    _check_in(store, 501, 223, datetime(2026, 12, 2, 15, 0, tzinfo=UTC))
    return school_engine


def _exits(engine: Engine) -> dict[int, datetime | None]:
    with Session(engine) as session:
        return {v.student_id: v.exit_time for v in session.exec(select(Visit)).all()}


def test_a_catch_up_closes_only_the_schools_whose_day_end_has_passed(two_zones: Engine) -> None:
    now = BERLIN_DAY_END + timedelta(minutes=30)  # 18:30 in Berlin, 12:30 in New York
    clock = iter([now, NEW_YORK_DAY_END + timedelta(minutes=30)])
    store = Store(two_zones)
    day_end = DayEnd(store, tz=BERLIN, day_end=SIX_PM, clock=lambda: next(clock))

    async def scenario() -> tuple[Closed, dict[int, datetime | None], Closed]:
        first = await day_end.catch_up()
        exits = _exits(two_zones)
        return first, exits, await day_end.catch_up()

    first, exits_between, second = asyncio.run(scenario())
    store.close()

    assert first == {1: [401]}
    assert exits_between == {401: BERLIN_DAY_END, 501: None}  # New York's afternoon goes on
    assert second == {2: [501]}
    assert _exits(two_zones) == {401: BERLIN_DAY_END, 501: NEW_YORK_DAY_END}


def test_the_running_job_closes_each_school_at_its_own_day_end(two_zones: Engine) -> None:
    store = Store(two_zones)
    now = [datetime(2026, 12, 2, 16, 0, tzinfo=UTC)]  # 17:00 in Berlin, 11:00 in New York
    closed: list[tuple[int, datetime, list[int]]] = []

    class Done(Exception):
        pass

    async def sleep(seconds: float) -> None:  # a fake clock: sleeping moves it on
        if len(closed) >= 2:
            raise Done
        now[0] += timedelta(seconds=seconds)

    day_end = DayEnd(store, tz=BERLIN, day_end=SIX_PM, clock=lambda: now[0], sleep=sleep)
    original_close = day_end.close

    async def close(cutoff: datetime, *, school_id: int) -> list[int]:
        students = await original_close(cutoff, school_id=school_id)
        if students:
            closed.append((school_id, cutoff, students))
        return students

    day_end.close = close  # type: ignore[method-assign]

    async def scenario() -> None:
        with contextlib.suppress(Done):
            async with asyncio.timeout(5):
                await day_end.run()

    asyncio.run(scenario())
    store.close()

    assert closed == [(1, BERLIN_DAY_END, [401]), (2, NEW_YORK_DAY_END, [501])]
    assert _exits(two_zones) == {401: BERLIN_DAY_END, 501: NEW_YORK_DAY_END}
