"""The daily attendance record: per child, arrival, departure and the rooms in between.

Built from the visits of one local day (the school's time zone): a child's stays in order,
each with who opened and closed it (a reader, a staff member, or the system at day end).
Arrival is the first stay's entry, departure the last stay's exit once every stay is closed.
Only children with at least one visit that day appear; a day without data is an empty list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from edge_bridge.models import ActiveGroup, OgsGroup, Room, Staff, Student, Visit
from edge_bridge.schoolday import day_bounds

_Row = tuple[Visit, Student, ActiveGroup, Room]


@dataclass(frozen=True, slots=True)
class ActorRef:
    """Who did it: `source` rfid (with the reader), manual (with the staff member), automated."""

    source: str | None
    device_id: str | None = None
    staff_id: int | None = None
    staff_name: str | None = None

    def describe(self) -> str:
        """A short German line for tables and CSV: "Leser reader-101", "Frau Schmidt", …"""
        if self.source == "rfid":
            return f"Leser {self.device_id}" if self.device_id else "Leser"
        if self.source == "manual":
            return self.staff_name or (
                f"Mitarbeiter {self.staff_id}" if self.staff_id else "manuell"
            )
        if self.source == "automated":
            return "automatisch"
        return ""


@dataclass(frozen=True, slots=True)
class Stay:
    """One visit: a room, an activity, from when to when, opened and closed by whom."""

    active_group_id: int
    activity_name: str
    room_id: int
    room_name: str
    entry_time: datetime
    exit_time: datetime | None
    entered_by: ActorRef
    left_by: ActorRef | None
    exit_reason: str | None


@dataclass(slots=True)
class AttendanceRecord:
    """One child's day."""

    student_id: int
    student_name: str
    ogs_group_id: int | None
    ogs_group_name: str | None
    stays: list[Stay] = field(default_factory=list)

    @property
    def arrival(self) -> datetime:
        return self.stays[0].entry_time

    @property
    def present(self) -> bool:
        """Still checked in (the last stay is open)."""
        return self.stays[-1].exit_time is None

    @property
    def departure(self) -> datetime | None:
        return None if self.present else self.stays[-1].exit_time

    @property
    def checked_in_by(self) -> ActorRef:
        return self.stays[0].entered_by

    @property
    def checked_out_by(self) -> ActorRef | None:
        return None if self.present else self.stays[-1].left_by

    @property
    def departure_reason(self) -> str | None:
        return None if self.present else self.stays[-1].exit_reason


def attendance_for_day(
    session: Session,
    *,
    day: date,
    tz: ZoneInfo,
    ogs_group_id: int | None = None,
    room_id: int | None = None,
) -> list[AttendanceRecord]:
    """The record of `day`, by child name; filtered by home group and by a room visited."""
    start, end = day_bounds(day, tz)
    query = (
        select(Visit, Student, ActiveGroup, Room)
        .join(Student, col(Student.id) == col(Visit.student_id))
        .join(ActiveGroup, col(ActiveGroup.id) == col(Visit.active_group_id))
        .join(Room, col(Room.id) == col(ActiveGroup.room_id))
        .where(col(Visit.entry_time) >= start, col(Visit.entry_time) < end)
        .order_by(col(Student.last_name), col(Student.first_name), col(Student.id))
        .order_by(col(Visit.entry_time), col(Visit.id))
    )
    if ogs_group_id is not None:
        query = query.where(Student.ogs_group_id == ogs_group_id)
    rows = session.exec(query).all()
    staff_names = _staff_names(session, rows)
    home_groups = _home_group_names(session, rows)
    records: dict[int, AttendanceRecord] = {}
    for visit, student, group, room in rows:
        record = records.get(student.id)
        if record is None:
            record = records[student.id] = AttendanceRecord(
                student.id,
                student.display_name,
                student.ogs_group_id,
                home_groups.get(student.ogs_group_id) if student.ogs_group_id else None,
            )
        record.stays.append(_stay(visit, group, room, staff_names))
    result = list(records.values())
    if room_id is not None:
        result = [r for r in result if any(stay.room_id == room_id for stay in r.stays)]
    return result


def _stay(visit: Visit, group: ActiveGroup, room: Room, staff_names: dict[int, str]) -> Stay:
    entered = ActorRef(
        visit.entry_source,
        visit.entry_device_id,
        visit.entry_staff_id,
        staff_names.get(visit.entry_staff_id) if visit.entry_staff_id else None,
    )
    left = None
    if visit.exit_time is not None:
        left = ActorRef(
            visit.exit_source,
            visit.exit_device_id,
            visit.exit_staff_id,
            staff_names.get(visit.exit_staff_id) if visit.exit_staff_id else None,
        )
    return Stay(
        active_group_id=group.id,  # type: ignore[arg-type]
        activity_name=group.name,
        room_id=room.id,
        room_name=room.name,
        entry_time=visit.entry_time,
        exit_time=visit.exit_time,
        entered_by=entered,
        left_by=left,
        exit_reason=visit.exit_reason,
    )


def _staff_names(session: Session, rows: Sequence[_Row]) -> dict[int, str]:
    ids = {
        staff_id
        for visit, *_ in rows
        for staff_id in (visit.entry_staff_id, visit.exit_staff_id)
        if staff_id is not None
    }
    if not ids:
        return {}
    return dict(session.exec(select(Staff.id, Staff.name).where(col(Staff.id).in_(ids))).all())


def _home_group_names(session: Session, rows: Sequence[_Row]) -> dict[int, str]:
    ids = {student.ogs_group_id for _, student, *_ in rows if student.ogs_group_id is not None}
    if not ids:
        return {}
    return dict(
        session.exec(select(OgsGroup.id, OgsGroup.name).where(col(OgsGroup.id).in_(ids))).all()
    )
