"""Visit rules (CONTRACT §3): one implementation for RFID scans and the REST API.

Each change runs inside a write transaction (`Tx`): it updates visits, supervisions and
groups and emits the events that describe it; the store inserts the events and publishes
them after the commit. Lookups go through a per-transaction cache (`tx.cache`), so a batch of
scans can preload what it needs in a few queries and the rules stay the same code.
The decision for a scan is a pure function of the loaded state (`decide_scan`), so the table
in the contract can be tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any

from sqlmodel import col, select

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


class ExitReason(StrEnum):
    """Why a visit ended (the attendance record shows it)."""

    CHECKOUT = "checkout"  # the child tapped out, or a supervisor checked them out
    TRANSFER = "transfer"  # checked in somewhere else
    ACTIVITY_END = "activity_end"  # the activity ended with the child present
    AUTO_CHECKOUT = "auto_checkout"  # still open at the end of the day (DAY_END)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a visit change: a reader (scan), a staff member (manual) or the system."""

    source: Source
    device_id: str | None = None
    staff_id: int | None = None


SYSTEM = Actor(Source.AUTOMATED)


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


def since_seconds(later: datetime, earlier: datetime | None) -> float | None:
    return None if earlier is None else (later - earlier) / timedelta(seconds=1)


# --- lookups, cached per transaction -----------------------------------------------------------


def _cached(tx: Tx, name: str) -> dict[Any, Any]:
    return tx.cache.setdefault(name, {})


def preload_open_visits(tx: Tx, student_ids: set[int]) -> None:
    """Load the open visits of many students in one query."""
    visits = _cached(tx, "open_visits")
    wanted = student_ids - visits.keys()
    if not wanted:
        return
    for student_id in wanted:
        visits[student_id] = None
    for visit in tx.session.exec(
        select(Visit).where(col(Visit.student_id).in_(wanted), col(Visit.exit_time).is_(None))
    ).all():
        visits[visit.student_id] = visit


def open_visit(tx: Tx, student_id: int) -> Visit | None:
    visits = _cached(tx, "open_visits")
    if student_id not in visits:  # a dict lookup: this runs several times per scan
        preload_open_visits(tx, {student_id})
    return visits[student_id]


def _running_groups(tx: Tx) -> dict[int, ActiveGroup]:
    """Running groups by room, loaded once per transaction (there are only a few)."""
    if "groups_by_room" not in tx.cache:
        groups = tx.session.exec(select(ActiveGroup).where(col(ActiveGroup.ended_at).is_(None)))
        tx.cache["groups_by_room"] = {group.room_id: group for group in groups.all()}
    return tx.cache["groups_by_room"]


def running_group_in_room(tx: Tx, room_id: int) -> ActiveGroup | None:
    return _running_groups(tx).get(room_id)


def running_group(tx: Tx, group_id: int) -> ActiveGroup:
    group = tx.session.get(ActiveGroup, group_id)
    if group is None or group.ended_at is not None:
        msg = f"active group {group_id} not found or ended"
        raise NotFoundError(msg)
    return group


def room_name(tx: Tx, room_id: int) -> str:
    rooms = _cached(tx, "room_names")
    if not rooms:
        rooms.update(dict(tx.session.exec(select(Room.id, Room.name)).all()))
    return rooms.get(room_id, f"Raum {room_id}")


def supervisor_ids(tx: Tx, group_id: int) -> list[int]:
    return list(
        tx.session.exec(
            select(Supervision.staff_id)
            .where(Supervision.active_group_id == group_id, col(Supervision.ended_at).is_(None))
            .order_by(col(Supervision.staff_id))
        ).all()
    )


# --- changes -----------------------------------------------------------------------------------


def _visit_data(tx: Tx, student: Student, group: ActiveGroup, source: Source) -> dict[str, Any]:
    return {
        "student_id": student.id,
        "student_name": student.display_name,
        "room_id": group.room_id,
        "room_name": room_name(tx, group.room_id),
        "activity_name": group.name,
        "source": str(source),
    }


def _visit_event(
    type_: EventType, tx: Tx, student: Student, group: ActiveGroup, source: Source
) -> NewEvent:
    data = _visit_data(tx, student, group, source)
    return NewEvent.for_group(
        type_,
        group.id,  # type: ignore[arg-type]
        school_id=group.school_id,
        ogs_group_id=student.ogs_group_id,
        **data,
    )


def group_of(tx: Tx, visit: Visit) -> ActiveGroup:
    group = tx.session.get(ActiveGroup, visit.active_group_id)
    assert group is not None
    return group


def _end(visit: Visit, *, at: datetime, by: Actor, reason: ExitReason) -> None:
    visit.exit_time = max(at, visit.entry_time)
    visit.exit_source = str(by.source)
    visit.exit_device_id = by.device_id
    visit.exit_staff_id = by.staff_id
    visit.exit_reason = str(reason)


def close_visit(
    tx: Tx,
    visit: Visit,
    student: Student,
    *,
    at: datetime,
    source: Source,
    by: Actor | None = None,
    reason: ExitReason = ExitReason.CHECKOUT,
) -> None:
    _end(visit, at=at, by=by or Actor(source), reason=reason)
    tx.session.add(visit)
    _cached(tx, "open_visits")[student.id] = None
    group = group_of(tx, visit)
    tx.room_changed(group.room_id)
    tx.emit(_visit_event(EventType.STUDENT_CHECKOUT, tx, student, group, source))


def check_in(
    tx: Tx,
    student: Student,
    group: ActiveGroup,
    *,
    at: datetime,
    source: Source,
    by: Actor | None = None,
) -> ScanResult:
    """Open a visit in `group`, closing one elsewhere first (a transfer)."""
    actor = by or Actor(source)
    current = open_visit(tx, student.id)
    if current is not None and current.active_group_id == group.id:
        msg = f"student {student.id} is already checked in to active group {group.id}"
        raise ConflictError(msg)
    if current is not None:
        close_visit(
            tx, current, student, at=at, source=source, by=actor, reason=ExitReason.TRANSFER
        )
    visit = Visit(
        student_id=student.id,  # type: ignore[arg-type]
        active_group_id=group.id,  # type: ignore[arg-type]
        entry_time=at,
        entry_source=str(actor.source),
        entry_device_id=actor.device_id,
        entry_staff_id=actor.staff_id,
    )
    tx.session.add(visit)
    _cached(tx, "open_visits")[student.id] = visit
    tx.room_changed(group.room_id)
    tx.emit(_visit_event(EventType.STUDENT_CHECKIN, tx, student, group, source))
    return ScanResult.CHECKED_IN if current is None else ScanResult.TRANSFERRED


def check_out(
    tx: Tx,
    student: Student,
    group_id: int,
    *,
    at: datetime,
    source: Source,
    by: Actor | None = None,
) -> None:
    current = open_visit(tx, student.id)
    if current is None or current.active_group_id != group_id:
        msg = f"student {student.id} is not checked in to active group {group_id}"
        raise NotFoundError(msg)
    close_visit(tx, current, student, at=at, source=source, by=by)


def _activity_event(type_: EventType, tx: Tx, group: ActiveGroup, **extra: object) -> NewEvent:
    return NewEvent.for_group(
        type_,
        group.id,  # type: ignore[arg-type]
        school_id=group.school_id,
        activity_name=group.name,
        room_id=group.room_id,
        room_name=room_name(tx, group.room_id),
        supervisor_ids=supervisor_ids(tx, group.id),  # type: ignore[arg-type]
        **extra,
    )


def add_supervisor(tx: Tx, staff_id: int, group: ActiveGroup, *, at: datetime) -> bool:
    """Make the staff member a supervisor of the group; False if they already were."""
    if staff_id in supervisor_ids(tx, group.id):  # type: ignore[arg-type]
        return False
    tx.session.add(Supervision(staff_id=staff_id, active_group_id=group.id, started_at=at))  # type: ignore[arg-type]
    tx.session.flush()
    tx.supervision_changed(staff_id)
    tx.emit(_activity_event(EventType.ACTIVITY_UPDATE, tx, group))
    return True


def start_activity(
    tx: Tx, *, school_id: int, name: str, room_id: int, staff_id: int, at: datetime
) -> ActiveGroup:
    """Start an active group in a room of the caller's school, supervised by the caller;
    404 for a room of another school, 409 if the room is taken."""
    room = tx.session.get(Room, room_id)
    if room is None or room.school_id != school_id:
        msg = f"room {room_id} not found"
        raise NotFoundError(msg)
    if running_group_in_room(tx, room_id) is not None:
        msg = f"room {room_id} already has an active group"
        raise ConflictError(msg)
    group = ActiveGroup(name=name, room_id=room_id, started_at=at, school_id=school_id)
    tx.session.add(group)
    tx.session.flush()
    _running_groups(tx)[room_id] = group
    tx.session.add(Supervision(staff_id=staff_id, active_group_id=group.id, started_at=at))  # type: ignore[arg-type]
    tx.session.flush()
    tx.supervision_changed(staff_id)
    tx.emit(_activity_event(EventType.ACTIVITY_START, tx, group))
    return group


def end_activity(tx: Tx, group_id: int, *, at: datetime, by: Actor | None = None) -> list[int]:
    """Close the group's open visits and supervisions, end it; returns who was checked out."""
    group = running_group(tx, group_id)
    visits = tx.session.exec(
        select(Visit, Student)
        .join(Student, col(Student.id) == col(Visit.student_id))
        .where(Visit.active_group_id == group_id, col(Visit.exit_time).is_(None))
        .order_by(col(Visit.student_id))
    ).all()
    event = _activity_event(
        EventType.ACTIVITY_END, tx, group, student_ids=[s.id for _, s in visits]
    )
    if visits:
        tx.room_changed(group.room_id)
    for visit, student in visits:
        _end(visit, at=at, by=by or SYSTEM, reason=ExitReason.ACTIVITY_END)
        tx.session.add(visit)
        _cached(tx, "open_visits")[student.id] = None
        if student.ogs_group_id is not None:
            data = _visit_data(tx, student, group, Source.AUTOMATED)
            tx.emit(
                NewEvent.for_leaders(
                    EventType.STUDENT_CHECKOUT,
                    group_id,
                    school_id=group.school_id,
                    ogs_group_id=student.ogs_group_id,
                    **data,
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
    _running_groups(tx).pop(group.room_id, None)
    tx.session.flush()
    tx.emit(event)
    return [s.id for _, s in visits]
