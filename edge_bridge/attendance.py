"""The daily attendance record: per child, arrival, departure and the rooms in between.

Built from the visits of one local day (the school's time zone): a child's stays in order,
each with who opened and closed it (a reader, a staff member, or the system at day end).
Arrival is the first stay's entry, departure the last stay's exit once every stay is closed.
Only children with at least one visit that day appear; a day without data is an empty list.

Pure: the rows come from `edge_bridge/queries/office.py`, which reads one school's day.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from edge_bridge.models import ActiveGroup, Room, Student, Visit

VisitRow = tuple[Visit, Student, ActiveGroup, Room]
"""One visit with its child, its active group and that group's room."""


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


def build_records(
    rows: Iterable[VisitRow],
    *,
    staff_names: Mapping[int, str],
    home_groups: Mapping[int, str],
) -> list[AttendanceRecord]:
    """One record per child from the day's visits, in the order the rows come (by child,
    then entry time); `staff_names` and `home_groups` name the ids the visits refer to."""
    records: dict[int, AttendanceRecord] = {}
    for visit, student, group, room in rows:
        record = records.get(student.id)
        if record is None:
            home = student.ogs_group_id
            record = records[student.id] = AttendanceRecord(
                student.id,
                student.display_name,
                home,
                home_groups.get(home) if home is not None else None,
            )
        record.stays.append(_stay(visit, group, room, staff_names))
    return list(records.values())


def staff_ids_of(rows: Iterable[VisitRow]) -> set[int]:
    """The staff members who opened or closed one of these visits."""
    return {
        staff_id
        for visit, *_ in rows
        for staff_id in (visit.entry_staff_id, visit.exit_staff_id)
        if staff_id is not None
    }


def home_group_ids_of(rows: Iterable[VisitRow]) -> set[int]:
    """The home groups of the children of these visits."""
    return {student.ogs_group_id for _, student, *_ in rows if student.ogs_group_id is not None}


def _stay(visit: Visit, group: ActiveGroup, room: Room, staff_names: Mapping[int, str]) -> Stay:
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
