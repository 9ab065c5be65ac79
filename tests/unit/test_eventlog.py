"""The event log: ids in commit order, replay by group routing, pruning and resync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from edge_bridge.eventlog import EventLog
from edge_bridge.events import EventType, NewEvent
from edge_bridge.store import Store


def _emit(store: Store, *events: NewEvent) -> list[int]:
    def work(tx):  # type: ignore[no-untyped-def]
        for event in events:
            tx.emit(event)
        return tx

    tx = store.write_blocking(work)
    return [event.id for event in tx.events]


def _checkin(group: int, *, ogs: int | None = None, school: int = 1) -> NewEvent:
    return NewEvent.for_group(
        EventType.STUDENT_CHECKIN, group, school_id=school, ogs_group_id=ogs, student_id=1
    )


def test_ids_increase_in_emit_order_across_transactions(engine: Engine) -> None:
    store = Store(engine)

    first = _emit(store, _checkin(1), _checkin(2))
    second = _emit(store, _checkin(1))

    assert first + second == sorted(first + second)
    assert len(set(first + second)) == 3


def test_replay_returns_only_the_routed_events_after_the_id(engine: Engine) -> None:
    store, log = Store(engine), EventLog(engine, retention_seconds=3600)
    ids = _emit(store, _checkin(1), _checkin(2), _checkin(3, ogs=7), _checkin(1))

    replayed = log.events_after_blocking(
        ids[0], school_id=1, active_group_ids=frozenset({1}), ogs_group_ids=frozenset({7})
    )

    assert replayed is not None
    assert [event.id for event in replayed] == [ids[2], ids[3]]
    assert replayed[0].envelope()["data"]["ogs_group_id"] == "7"


def test_a_client_with_no_groups_replays_nothing(engine: Engine) -> None:
    store, log = Store(engine), EventLog(engine, retention_seconds=3600)
    _emit(store, _checkin(1))

    assert (
        log.events_after_blocking(
            0, school_id=1, active_group_ids=frozenset(), ogs_group_ids=frozenset()
        )
        == []
    )


def test_pruned_ids_ask_for_a_resync_and_newer_ones_still_replay(engine: Engine) -> None:
    store, log = Store(engine), EventLog(engine, retention_seconds=60)
    old = _emit(store, _checkin(1), _checkin(1))
    later = datetime.now(UTC) + timedelta(minutes=5)

    deleted = store.write_blocking(lambda tx: log.prune(tx.session, now=later))
    new = _emit(store, _checkin(1))

    groups = {"school_id": 1, "active_group_ids": frozenset({1}), "ogs_group_ids": frozenset()}
    assert deleted == 2
    assert log.events_after_blocking(old[0], **groups) is None
    replayed = log.events_after_blocking(old[1], **groups)
    assert replayed is not None and [event.id for event in replayed] == new
    assert new[0] > old[1]  # ids are never reused after a prune


def test_too_many_missed_events_ask_for_a_resync(engine: Engine) -> None:
    store = Store(engine)
    log = EventLog(engine, retention_seconds=3600, replay_limit=3)
    _emit(store, *[_checkin(1) for _ in range(5)])

    assert (
        log.events_after_blocking(
            0, school_id=1, active_group_ids=frozenset({1}), ogs_group_ids=frozenset()
        )
        is None
    )


def test_an_id_whose_next_event_is_older_than_the_retention_asks_for_a_resync_before_a_prune(
    engine: Engine,
) -> None:
    store = Store(engine)
    old = _emit(store, _checkin(1), _checkin(1))
    three_seconds_later = datetime.now(UTC) + timedelta(seconds=3)
    log = EventLog(engine, retention_seconds=2, clock=lambda: three_seconds_later)
    groups = {"school_id": 1, "active_group_ids": frozenset({1}), "ogs_group_ids": frozenset()}

    missed_old = log.events_after_blocking(old[0], **groups)
    up_to_date = log.events_after_blocking(old[1], **groups)

    assert missed_old is None  # event old[1] is past the retention: pruned or not, resync
    assert up_to_date == []  # nothing missed: no resync, however old the last event
    assert log.last_event_id() == old[1]


def test_a_client_that_missed_only_fresh_events_replays_although_older_ones_exist(
    engine: Engine,
) -> None:
    store = Store(engine)
    _emit(store, _checkin(1))
    fresh = _emit(store, _checkin(1))
    log = EventLog(engine, retention_seconds=60)
    groups = {"school_id": 1, "active_group_ids": frozenset({1}), "ogs_group_ids": frozenset()}

    replayed = log.events_after_blocking(fresh[0] - 1, **groups)

    assert replayed is not None and [event.id for event in replayed] == fresh


def test_the_newest_id_counts_ids_marked_gone_after_everything_was_pruned(engine: Engine) -> None:
    store, log = Store(engine), EventLog(engine, retention_seconds=60)
    ids = _emit(store, _checkin(1), _checkin(1))
    later = datetime.now(UTC) + timedelta(minutes=5)

    store.write_blocking(lambda tx: log.prune(tx.session, now=later))

    assert log.last_event_id() == ids[1]  # not 0: a restart must not hand out old ids


def test_replay_reads_only_the_asked_schools_events_whatever_their_route_ids(
    engine: Engine,
) -> None:
    store, log = Store(engine), EventLog(engine, retention_seconds=3600)
    office_two = NewEvent.for_admins(EventType.DEVICE_STATUS, school_id=2, device_id="r-2")
    office_one = NewEvent.for_admins(EventType.OCCUPANCY, school_id=1, rooms=[])
    no_school = NewEvent(EventType.STUDENT_CHECKIN, 1, {}, 1, 7)  # a service forgot it
    ids = _emit(
        store,
        _checkin(1, ogs=7, school=2),
        _checkin(1, ogs=7),
        office_two,
        _checkin(2, ogs=7, school=2),
        no_school,
        office_one,
    )
    routes = {"active_group_ids": frozenset({1}), "ogs_group_ids": frozenset({7}), "admin": True}

    school_one = log.events_after_blocking(0, school_id=1, **routes)
    school_two = log.events_after_blocking(0, school_id=2, **routes)

    assert school_one is not None and [event.id for event in school_one] == [ids[1], ids[5]]
    assert {event.school_id for event in school_one} == {1}
    assert school_two is not None and [event.id for event in school_two] == [ids[0], ids[2], ids[3]]


def test_the_replay_limit_counts_only_the_asked_schools_events(engine: Engine) -> None:
    store = Store(engine)
    log = EventLog(engine, retention_seconds=3600, replay_limit=3)
    _emit(store, *[_checkin(1, school=2) for _ in range(5)])
    own = _emit(store, _checkin(1))
    groups = {"active_group_ids": frozenset({1}), "ogs_group_ids": frozenset()}

    replayed = log.events_after_blocking(0, school_id=1, **groups)

    assert replayed is not None and [event.id for event in replayed] == own
    assert log.events_after_blocking(0, school_id=2, **groups) is None  # 5 > 3: resync
