"""edge_bridge/tail.py's read and hand-over, against a real PostgreSQL database.

The LISTEN loop, reconnects and the poll run in tests/integration/test_scale_events.py; here
the tail's reads (`read_blocking`) and what it hands the announcer (`hand_over`) are driven
one step at a time, so every interleaving of a wake-up and a poll can be set up exactly.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from edge_bridge.directory import StaffDirectory
from edge_bridge.eventlog import EventLog
from edge_bridge.events import EventType, NewEvent
from edge_bridge.models import utcnow
from edge_bridge.store import Announcer, Store
from edge_bridge.tail import EventTail
from edge_bridge.tuning import TAIL_STALE_SECONDS
from edge_bridge.visits import end_activity, start_activity
from tests.conftest import POSTGRES_ADMIN_URL
from tests.factories import RecordingBroadcaster

pytestmark = pytest.mark.skipif(
    POSTGRES_ADMIN_URL is None, reason="the tail reads PostgreSQL: set EDGE_TEST_POSTGRES_URL"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _tail(
    engine: Engine,
    broadcaster: RecordingBroadcaster,
    *,
    batch: int = 1000,
    directory: StaffDirectory | None = None,
    clock: FakeClock | None = None,
) -> EventTail:
    announcer = Announcer(broadcaster, directory=directory)
    log = EventLog(engine, retention_seconds=3600)
    return EventTail(engine, announcer, eventlog=log, batch=batch, clock=clock or FakeClock())


def _emit(store: Store, *groups: int, school_id: int = 1) -> list[int]:
    def work(tx):  # type: ignore[no-untyped-def]
        for group in groups:
            tx.emit(
                NewEvent.for_group(
                    EventType.STUDENT_CHECKIN, group, school_id=school_id, student_id=1
                )
            )

    return [event.id for event in store.commit_blocking(work).events]


def _step(tail: EventTail, *, after: int | None = None, reload: bool = False) -> None:
    """One read from `after` (default: the tail's own position), then its hand-over."""
    batch = tail.read_blocking(tail.last_seen if after is None else after, reload)
    asyncio.run(tail.hand_over(batch))


def test_overlapping_reads_hand_each_event_over_once_in_id_order(engine: Engine) -> None:
    store, broadcaster = Store(engine), RecordingBroadcaster()
    tail = _tail(engine, broadcaster)
    first = _emit(store, 10, 20)
    _step(tail)
    second = _emit(store, 10)

    # A poll that raced the wake-up reads from an older position: rows seen already come back.
    _step(tail, after=0)
    _step(tail)

    assert [event.id for event in broadcaster.events] == first + second
    assert tail.last_seen == second[-1]
    assert broadcaster.position == second[-1]


def test_events_read_from_the_log_carry_their_school(engine: Engine) -> None:
    store, broadcaster = Store(engine), RecordingBroadcaster()
    tail = _tail(engine, broadcaster)
    school_two = _emit(store, 10, 20, school_id=2)
    school_one = _emit(store, 10)

    _step(tail)

    handed = [(event.id, event.school_id) for event in broadcaster.events]
    assert handed == [(school_two[0], 2), (school_two[1], 2), (school_one[0], 1)]


def test_a_full_batch_is_followed_by_more_reads_that_skip_nothing(engine: Engine) -> None:
    store, broadcaster = Store(engine), RecordingBroadcaster()
    tail = _tail(engine, broadcaster, batch=2)
    ids = _emit(store, 10, 20, 30, 40, 50)

    reads = 0
    while True:
        batch = tail.read_blocking(tail.last_seen, False)
        asyncio.run(tail.hand_over(batch))
        reads += 1
        if not batch.rows.full:
            break

    assert [event.id for event in broadcaster.events] == ids
    assert reads == 3


def test_a_supervision_change_gains_before_its_events_and_settles_after(
    school_engine: Engine,
) -> None:
    store, broadcaster = Store(school_engine), RecordingBroadcaster()
    tail = _tail(school_engine, broadcaster)
    tail.last_seen = EventLog(school_engine, retention_seconds=3600).last_event_id()

    group_id = store.commit_blocking(
        lambda tx: (
            start_activity(tx, school_id=1, name="Malen", room_id=3, staff_id=3, at=utcnow()).id
        )
    ).result
    _step(tail)
    started = [event.id for event in broadcaster.events]
    store.commit_blocking(lambda tx: end_activity(tx, group_id, at=utcnow()))
    _step(tail)

    [start] = started
    end = broadcaster.events[-1]
    assert broadcaster.events[0].type is EventType.ACTIVITY_START
    assert end.type is EventType.ACTIVITY_END
    assert broadcaster.log == [
        ("staff", 3, True),
        ("event", start),
        ("staff", 3, False),
        ("staff", 3, True),
        *[("event", event.id) for event in broadcaster.events[1:]],
        ("staff", 3, False),
    ]
    assert broadcaster.staff_updates[0] == (3, frozenset({group_id}), frozenset({7}), True)
    assert broadcaster.staff_updates[-1] == (3, frozenset(), frozenset({7}), False)
    # the internal rows are not events, but the tail has read past them
    assert all(event.type in set(EventType) for event in broadcaster.events)
    assert broadcaster.position > end.id


def test_the_directory_read_with_the_rows_is_applied_after_them(school_engine: Engine) -> None:
    store = Store(school_engine)
    broadcaster = RecordingBroadcaster(connected=frozenset({1, 4}))
    directory = StaffDirectory()
    tail = _tail(school_engine, broadcaster, directory=directory)
    _step(tail, reload=True)
    assert directory.staff(4) is not None
    ids = _emit(store, 123)
    with school_engine.begin() as connection:
        connection.execute(text("DELETE FROM staff WHERE id = 4"))
    broadcaster.log.clear()

    _step(tail, reload=True)

    assert directory.staff(4) is None
    assert directory.staff(1) is not None
    assert broadcaster.log[0] == ("event", ids[0])
    assert sorted(broadcaster.log[1:]) == [("staff", 1, False), ("staff", 4, False)]
    assert set(broadcaster.staff_updates[-2:]) == {
        (1, *directory.groups(1), False),
        (4, frozenset(), frozenset(), False),  # deleted: their open streams get nothing
    }


def test_status_is_disconnected_behind_then_ok_and_behind_again_when_stale(
    engine: Engine,
) -> None:
    clock = FakeClock()
    tail = _tail(engine, RecordingBroadcaster(), clock=clock)
    disconnected = tail.status()
    tail.listening = True
    before_first_read = tail.status()

    _step(tail)
    caught_up = tail.status()
    clock.now += TAIL_STALE_SECONDS + 0.5
    stale = tail.status()

    assert (disconnected, before_first_read, caught_up, stale) == (
        "disconnected",
        "behind",
        "ok",
        "behind",
    )
    assert tail.lag_seconds() == pytest.approx(TAIL_STALE_SECONDS + 0.5)
