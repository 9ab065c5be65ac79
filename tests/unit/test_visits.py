"""The CONTRACT §3 table as a pure decision, and the visit changes it leads to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from edge_bridge.errors import ConflictError, NotFoundError
from edge_bridge.events import EventType, Source
from edge_bridge.models import ActiveGroup, Student, Supervision, Visit
from edge_bridge.store import Store
from edge_bridge.visits import (
    Action,
    ScanState,
    check_in,
    check_out,
    decide_scan,
    end_activity,
    running_group,
    start_activity,
)
from edge_bridge.wire import ScanResult
from tests.factories import AnnouncingWriter, RecordingBroadcaster

NOW = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)


def _state(**changes: object) -> ScanState:
    values: dict[str, object] = {
        "is_staff": False,
        "is_student": True,
        "active_group_id": 1,
        "open_visit_group_id": None,
        "seconds_since_last_accepted": None,
        "debounce_seconds": 3.0,
    }
    values.update(changes)
    return ScanState(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (_state(is_student=False), (Action.NOTHING, ScanResult.UNKNOWN_TAG)),
        (_state(active_group_id=None), (Action.NOTHING, ScanResult.NO_ACTIVE_GROUP)),
        (_state(seconds_since_last_accepted=2.9), (Action.NOTHING, ScanResult.DUPLICATE)),
        (_state(seconds_since_last_accepted=-1.0), (Action.NOTHING, ScanResult.DUPLICATE)),
        (
            _state(is_student=False, is_staff=True),
            (Action.SUPERVISE, ScanResult.SUPERVISOR_AUTHENTICATED),
        ),
        (_state(), (Action.CHECK_IN, ScanResult.CHECKED_IN)),
        (_state(seconds_since_last_accepted=3.0), (Action.CHECK_IN, ScanResult.CHECKED_IN)),
        (_state(open_visit_group_id=1), (Action.CHECK_OUT, ScanResult.CHECKED_OUT)),
        (_state(open_visit_group_id=2), (Action.TRANSFER, ScanResult.TRANSFERRED)),
        (_state(is_student=False, active_group_id=None), (Action.NOTHING, ScanResult.UNKNOWN_TAG)),
    ],
    ids=[
        "unknown tag",
        "no active group",
        "within debounce",
        "older buffered scan within debounce",
        "staff tag",
        "no open visit",
        "exactly at the debounce edge",
        "open visit here",
        "open visit elsewhere",
        "unknown tag wins over no active group",
    ],
)
def test_the_contract_table(state: ScanState, expected: tuple[Action, ScanResult]) -> None:
    assert decide_scan(state) == expected


@pytest.fixture
def store(school_engine: Engine) -> tuple[AnnouncingWriter, RecordingBroadcaster]:
    broadcaster = RecordingBroadcaster()
    return AnnouncingWriter(Store(school_engine), broadcaster), broadcaster


def _student(session: Session, student_id: int) -> Student:
    student = session.get(Student, student_id)
    assert student is not None
    return student


def test_a_manual_transfer_closes_the_old_visit_and_announces_both_events(
    store: tuple[AnnouncingWriter, RecordingBroadcaster],
) -> None:
    writer, broadcaster = store
    writer.write_blocking(
        lambda tx: check_in(
            tx, _student(tx.session, 401), running_group(tx, 124), at=NOW, source=Source.MANUAL
        )
    )

    result = writer.write_blocking(
        lambda tx: check_in(
            tx,
            _student(tx.session, 401),
            running_group(tx, 123),
            at=NOW + timedelta(minutes=5),
            source=Source.MANUAL,
        )
    )

    assert result is ScanResult.TRANSFERRED
    types = [(e.type, e.active_group_id, e.data["source"]) for e in broadcaster.group_events]
    assert types == [
        (EventType.STUDENT_CHECKIN, 124, "manual"),
        (EventType.STUDENT_CHECKOUT, 124, "manual"),
        (EventType.STUDENT_CHECKIN, 123, "manual"),
    ]
    assert [e.id for e in broadcaster.events] == sorted(e.id for e in broadcaster.events)
    assert broadcaster.group_events[0].route_ogs_group_id == 7
    with Session(writer.engine) as session:
        open_groups = session.exec(
            select(Visit.active_group_id).where(col(Visit.exit_time).is_(None))
        ).all()
    assert open_groups == [123]


def test_checking_in_twice_to_the_same_group_is_a_conflict_and_changes_nothing(
    store: tuple[AnnouncingWriter, RecordingBroadcaster],
) -> None:
    writer, broadcaster = store
    work = lambda tx: check_in(  # noqa: E731
        tx, _student(tx.session, 401), running_group(tx, 124), at=NOW, source=Source.MANUAL
    )
    writer.write_blocking(work)

    with pytest.raises(ConflictError):
        writer.write_blocking(work)

    assert len(broadcaster.group_events) == 1


def test_checking_out_a_student_who_is_not_there_is_not_found(
    store: tuple[AnnouncingWriter, RecordingBroadcaster],
) -> None:
    writer, broadcaster = store

    with pytest.raises(NotFoundError):
        writer.write_blocking(
            lambda tx: check_out(tx, _student(tx.session, 401), 124, at=NOW, source=Source.MANUAL)
        )

    assert broadcaster.events == []


def test_starting_an_activity_in_a_busy_room_is_a_conflict(
    store: tuple[AnnouncingWriter, RecordingBroadcaster],
) -> None:
    writer, _ = store

    with pytest.raises(ConflictError):
        writer.write_blocking(
            lambda tx: start_activity(tx, school_id=1, name="Malen", room_id=1, staff_id=3, at=NOW)
        )


def test_starting_an_activity_makes_the_starter_supervise_it(
    store: tuple[AnnouncingWriter, RecordingBroadcaster],
) -> None:
    writer, broadcaster = store

    group_id = writer.write_blocking(
        lambda tx: start_activity(tx, school_id=1, name="Malen", room_id=3, staff_id=3, at=NOW).id
    )

    assert broadcaster.events[-1].type is EventType.ACTIVITY_START
    assert broadcaster.events[-1].data["supervisor_ids"] == ["3"]
    # first only gains (so the activity_start reaches the starter), then the exact set
    assert broadcaster.staff_updates == [
        (3, frozenset({group_id}), frozenset({7}), True),
        (3, frozenset({group_id}), frozenset({7}), False),
    ]
    start = broadcaster.events[-1].id
    assert broadcaster.log == [("staff", 3, True), ("event", start), ("staff", 3, False)]


def test_ending_an_activity_closes_visits_and_tells_home_group_leaders(
    store: tuple[AnnouncingWriter, RecordingBroadcaster],
) -> None:
    writer, broadcaster = store
    for student_id in (401, 431):
        writer.write_blocking(
            lambda tx, sid=student_id: check_in(
                tx, _student(tx.session, sid), running_group(tx, 124), at=NOW, source=Source.RFID
            )
        )
    broadcaster.events.clear()

    checked_out = writer.write_blocking(lambda tx: end_activity(tx, 124, at=NOW))

    assert checked_out == [401, 431]
    automated = [e for e in broadcaster.events if e.type is EventType.STUDENT_CHECKOUT]
    assert [(e.route_active_group_id, e.route_ogs_group_id) for e in automated] == [
        (None, 7),
        (None, 8),
    ]
    assert all(e.data["source"] == "automated" for e in automated)
    end = broadcaster.group_events[-1]
    assert (end.type, end.data["student_ids"]) == (EventType.ACTIVITY_END, ["401", "431"])
    # the group is dropped only after its activity_end was published
    assert broadcaster.staff_updates == [
        (1, frozenset(), frozenset(), True),
        (1, frozenset(), frozenset(), False),
    ]
    assert broadcaster.log[-1] == ("staff", 1, False)
    assert broadcaster.log.index(("event", end.id)) < broadcaster.log.index(("staff", 1, False))
    with Session(writer.engine) as session:
        group = session.get(ActiveGroup, 124)
        assert group is not None and group.ended_at == NOW
        assert session.exec(select(Visit).where(col(Visit.exit_time).is_(None))).all() == []
        assert (
            session.exec(
                select(Supervision).where(
                    col(Supervision.ended_at).is_(None), Supervision.active_group_id == 124
                )
            ).all()
            == []
        )
