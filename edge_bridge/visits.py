"""Visit rules (CONTRACT §3): one implementation for RFID scans and the REST API.

Each change runs inside a write transaction (`Tx`): it updates visits, supervisions and
groups and appends the events that describe it; the store publishes them after the commit.
The decision for a scan is a pure function of the loaded state (`decide_scan`), so the table
in the contract can be tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlmodel import Session, col, select

from edge_bridge.errors import ConflictError, NotFoundError
from edge_bridge.events import EventType, NewEvent, Source
from edge_bridge.models import ActiveGroup, Room, Student, Supervision, Visit
from edge_bridge.store import Tx
from edge_bridge.wire import ScanResult


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reader is told: result, German display line, the student's name if any."""

    result: ScanResult
    message: str
    student_name: str | None = None


class Action(Enum):
    """What a scan does, decided before anything is written."""

    NOTHING = "nothing"
    SUPERVISE = "supervise"
    CHECK_IN = "check_in"
    CHECK_OUT = "check_out"
    TRANSFER = "transfer"


@dataclass(frozen=True, slots=True)
class ScanState:
    """Everything the rules look at, loaded in the transaction."""

    is_staff: bool
    is_student: bool
    active_group_id: int | None
    open_visit_group_id: int | None
    seconds_since_last_accepted: float | None
    debounce_seconds: float


def decide_scan(state: ScanState) -> tuple[Action, ScanResult]:
    """The CONTRACT §3 table, in its order."""
    if not (state.is_staff or state.is_student):
        return Action.NOTHING, ScanResult.UNKNOWN_TAG
    if state.active_group_id is None:
        return Action.NOTHING, ScanResult.NO_ACTIVE_GROUP
    since = state.seconds_since_last_accepted
    if since is not None and abs(since) < state.debounce_seconds:
        return Action.NOTHING, ScanResult.DUPLICATE
    if state.is_staff:
        return Action.SUPERVISE, ScanResult.SUPERVISOR_AUTHENTICATED
    if state.open_visit_group_id is None:
        return Action.CHECK_IN, ScanResult.CHECKED_IN
    if state.open_visit_group_id == state.active_group_id:
        return Action.CHECK_OUT, ScanResult.CHECKED_OUT
    return Action.TRANSFER, ScanResult.TRANSFERRED


# --- lookups -----------------------------------------------------------------------------------


def running_group_in_room(session: Session, room_id: int) -> ActiveGroup | None:
    return session.exec(
        select(ActiveGroup).where(
            ActiveGroup.room_id == room_id, col(ActiveGroup.ended_at).is_(None)
        )
    ).first()


def open_visit(session: Session, student_id: int) -> Visit | None:
    return session.exec(
        select(Visit).where(Visit.student_id == student_id, col(Visit.exit_time).is_(None))
    ).first()


def running_group(session: Session, group_id: int) -> ActiveGroup:
    group = session.get(ActiveGroup, group_id)
    if group is None or group.ended_at is not None:
        msg = f"active group {group_id} not found or ended"
        raise NotFoundError(msg)
    return group


def supervisor_ids(session: Session, group_id: int) -> list[int]:
    return list(
        session.exec(
            select(Supervision.staff_id)
            .where(Supervision.active_group_id == group_id, col(Supervision.ended_at).is_(None))
            .order_by(col(Supervision.staff_id))
        ).all()
    )


def room_name(session: Session, room_id: int) -> str:
    room = session.get(Room, room_id)
    return room.name if room else f"Raum {room_id}"


# --- changes -----------------------------------------------------------------------------------


def _visit_data(session: Session, student: Student, group: ActiveGroup, source: Source) -> dict:
    return {
        "student_id": student.id,
        "student_name": student.display_name,
        "room_id": group.room_id,
        "room_name": room_name(session, group.room_id),
        "activity_name": group.name,
        "source": str(source),
    }


def _visit_event(
    type_: EventType, session: Session, student: Student, group: ActiveGroup, source: Source
) -> NewEvent:
    data = _visit_data(session, student, group, source)
    return NewEvent.for_group(type_, group.id, ogs_group_id=student.ogs_group_id, **data)  # type: ignore[arg-type]


def close_visit(tx: Tx, visit: Visit, student: Student, *, at: datetime, source: Source) -> None:
    visit.exit_time = max(at, visit.entry_time)
    tx.session.add(visit)
    tx.session.flush()
    group = tx.session.get(ActiveGroup, visit.active_group_id)
    assert group is not None
    tx.emit(_visit_event(EventType.STUDENT_CHECKOUT, tx.session, student, group, source))


def check_in(
    tx: Tx, student: Student, group: ActiveGroup, *, at: datetime, source: Source
) -> ScanResult:
    """Open a visit in `group`, closing one elsewhere first (a transfer)."""
    current = open_visit(tx.session, student.id)
    if current is not None and current.active_group_id == group.id:
        msg = f"student {student.id} is already checked in to active group {group.id}"
        raise ConflictError(msg)
    if current is not None:
        close_visit(tx, current, student, at=at, source=source)
    tx.session.add(Visit(student_id=student.id, active_group_id=group.id, entry_time=at))  # type: ignore[arg-type]
    tx.session.flush()
    tx.emit(_visit_event(EventType.STUDENT_CHECKIN, tx.session, student, group, source))
    return ScanResult.CHECKED_IN if current is None else ScanResult.TRANSFERRED


def check_out(tx: Tx, student: Student, group_id: int, *, at: datetime, source: Source) -> None:
    current = open_visit(tx.session, student.id)
    if current is None or current.active_group_id != group_id:
        msg = f"student {student.id} is not checked in to active group {group_id}"
        raise NotFoundError(msg)
    close_visit(tx, current, student, at=at, source=source)


def add_supervisor(tx: Tx, staff_id: int, group: ActiveGroup, *, at: datetime) -> bool:
    """Make the staff member a supervisor of the group; False if they already were."""
    if staff_id in supervisor_ids(tx.session, group.id):  # type: ignore[arg-type]
        return False
    tx.session.add(Supervision(staff_id=staff_id, active_group_id=group.id, started_at=at))  # type: ignore[arg-type]
    tx.session.flush()
    tx.supervision_changed(staff_id)
    tx.emit(_activity_event(EventType.ACTIVITY_UPDATE, tx.session, group))
    return True


def _activity_event(
    type_: EventType, session: Session, group: ActiveGroup, **extra: object
) -> NewEvent:
    return NewEvent.for_group(
        type_,
        group.id,  # type: ignore[arg-type]
        activity_name=group.name,
        room_id=group.room_id,
        room_name=room_name(session, group.room_id),
        supervisor_ids=supervisor_ids(session, group.id),  # type: ignore[arg-type]
        **extra,
    )


def start_activity(tx: Tx, *, name: str, room_id: int, staff_id: int, at: datetime) -> ActiveGroup:
    """Start an active group in a room, supervised by the caller; 409 if the room is taken."""
    if tx.session.get(Room, room_id) is None:
        msg = f"room {room_id} not found"
        raise NotFoundError(msg)
    if running_group_in_room(tx.session, room_id) is not None:
        msg = f"room {room_id} already has an active group"
        raise ConflictError(msg)
    group = ActiveGroup(name=name, room_id=room_id, started_at=at)
    tx.session.add(group)
    tx.session.flush()
    tx.session.add(Supervision(staff_id=staff_id, active_group_id=group.id, started_at=at))  # type: ignore[arg-type]
    tx.session.flush()
    tx.supervision_changed(staff_id)
    tx.emit(_activity_event(EventType.ACTIVITY_START, tx.session, group))
    return group


def end_activity(tx: Tx, group_id: int, *, at: datetime) -> list[int]:
    """Close the group's open visits and supervisions, end it; returns who was checked out."""
    group = running_group(tx.session, group_id)
    visits = tx.session.exec(
        select(Visit, Student)
        .join(Student, col(Student.id) == col(Visit.student_id))
        .where(Visit.active_group_id == group_id, col(Visit.exit_time).is_(None))
        .order_by(col(Visit.student_id))
    ).all()
    event = _activity_event(
        EventType.ACTIVITY_END, tx.session, group, student_ids=[s.id for _, s in visits]
    )
    for visit, student in visits:
        visit.exit_time = max(at, visit.entry_time)
        tx.session.add(visit)
        if student.ogs_group_id is not None:
            data = _visit_data(tx.session, student, group, Source.AUTOMATED)
            tx.emit(
                NewEvent.for_leaders(
                    EventType.STUDENT_CHECKOUT, group_id, ogs_group_id=student.ogs_group_id, **data
                )
            )
    for supervision in tx.session.exec(
        select(Supervision).where(
            Supervision.active_group_id == group_id, col(Supervision.ended_at).is_(None)
        )
    ).all():
        supervision.ended_at = at
        tx.session.add(supervision)
        tx.supervision_changed(supervision.staff_id)
    group.ended_at = at
    tx.session.add(group)
    tx.session.flush()
    tx.emit(event)
    return [s.id for _, s in visits]


def since_seconds(later: datetime, earlier: datetime | None) -> float | None:
    return None if earlier is None else (later - earlier) / timedelta(seconds=1)
