"""The office view's reads, each for one school: the attendance record of a day, room
occupancy over a day, and the readers with today's scans.

Every query filters by the scope's school in SQL, on the school-owned table it reads
(a visit has no school of its own: it is its child's and its active group's). A home group
or room filter naming another school's id is `NotFoundError`, like a missing id. Days are
the school's local days (`scope.timezone`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import case
from sqlmodel import Session, col, func, or_, select

from edge_bridge.attendance import (
    AttendanceRecord,
    VisitRow,
    build_records,
    home_group_ids_of,
    staff_ids_of,
)
from edge_bridge.models import (
    ActiveGroup,
    Device,
    OgsGroup,
    ProcessedScan,
    Room,
    Staff,
    Student,
    Visit,
)
from edge_bridge.occupancy import RoomOccupancy, occupancy_curves
from edge_bridge.queries import SchoolScope, get_owned
from edge_bridge.reader_health import NO_SCANS, ScanCounts, StoredReader
from edge_bridge.schoolday import day_bounds, local_day

__all__ = ["attendance_for_day", "occupancy_for_day", "readers_with_scans"]


def attendance_for_day(
    session: Session,
    scope: SchoolScope,
    *,
    day: date,
    ogs_group_id: int | None = None,
    room_id: int | None = None,
) -> list[AttendanceRecord]:
    """The school's record of its local `day`, by child name; filtered by home group and by
    a room visited that day (another school's group or room: `NotFoundError`)."""
    if ogs_group_id is not None:
        get_owned(session, scope, OgsGroup, ogs_group_id)
    if room_id is not None:
        get_owned(session, scope, Room, room_id)
    rows = _visits_of_day(session, scope, day=day, ogs_group_id=ogs_group_id, room_id=room_id)
    return build_records(
        rows,
        staff_names=_staff_names(session, scope, staff_ids_of(rows)),
        home_groups=_home_group_names(session, scope, home_group_ids_of(rows)),
    )


def _visits_of_day(
    session: Session,
    scope: SchoolScope,
    *,
    day: date,
    ogs_group_id: int | None,
    room_id: int | None,
) -> Sequence[VisitRow]:
    start, end = day_bounds(day, scope.timezone)
    in_day = (col(Visit.entry_time) >= start, col(Visit.entry_time) < end)
    query = (
        select(Visit, Student, ActiveGroup, Room)
        .join(Student, col(Student.id) == col(Visit.student_id))
        .join(ActiveGroup, col(ActiveGroup.id) == col(Visit.active_group_id))
        .join(Room, col(Room.id) == col(ActiveGroup.room_id))
        .where(Student.school_id == scope.school_id, ActiveGroup.school_id == scope.school_id)
        .where(*in_day)
        .order_by(col(Student.last_name), col(Student.first_name), col(Student.id))
        .order_by(col(Visit.entry_time), col(Visit.id))
    )
    if ogs_group_id is not None:
        query = query.where(Student.ogs_group_id == ogs_group_id)
    if room_id is not None:  # the children with a stay in that room that day: all their stays
        visited = (
            select(Visit.student_id)
            .join(ActiveGroup, col(ActiveGroup.id) == col(Visit.active_group_id))
            .where(ActiveGroup.school_id == scope.school_id, ActiveGroup.room_id == room_id)
            .where(*in_day)
        )
        query = query.where(col(Visit.student_id).in_(visited))
    return session.exec(query).all()


def _staff_names(session: Session, scope: SchoolScope, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.exec(
        select(Staff.id, Staff.name).where(
            Staff.school_id == scope.school_id, col(Staff.id).in_(ids)
        )
    ).all()
    return dict(rows)


def _home_group_names(session: Session, scope: SchoolScope, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.exec(
        select(OgsGroup.id, OgsGroup.name).where(
            OgsGroup.school_id == scope.school_id, col(OgsGroup.id).in_(ids)
        )
    ).all()
    return dict(rows)


def occupancy_for_day(
    session: Session, scope: SchoolScope, *, day: date, now: datetime
) -> list[RoomOccupancy]:
    """Every room of the school with its curve over its local `day`, up to `now` if that is
    earlier."""
    start, end = day_bounds(day, scope.timezone)
    until = min(end, max(now, start))
    rooms = session.exec(
        select(Room.id, Room.name).where(Room.school_id == scope.school_id).order_by(col(Room.id))
    ).all()
    visits = session.exec(
        select(ActiveGroup.room_id, Visit.entry_time, Visit.exit_time)
        .join(ActiveGroup, col(ActiveGroup.id) == col(Visit.active_group_id))
        .where(
            ActiveGroup.school_id == scope.school_id,
            col(Visit.entry_time) < until,
            or_(col(Visit.exit_time).is_(None), col(Visit.exit_time) >= start),
        )
    ).all()
    return occupancy_curves(rooms, visits, start=start, until=until)


def readers_with_scans(
    session: Session, scope: SchoolScope, *, now: datetime
) -> list[StoredReader]:
    """The school's readers by id, each with its room's name, its last processed scan and
    how many it had since the school's local day began."""
    since, _ = day_bounds(local_day(now, scope.timezone), scope.timezone)
    counts = _scan_counts(session, scope, since=since)
    rows = session.exec(
        select(Device, Room.name)
        .join(Room, col(Room.id) == col(Device.room_id))
        .where(Device.school_id == scope.school_id)
        .order_by(col(Device.id))
    ).all()
    return [
        StoredReader(device, room_name, counts.get(device.id, NO_SCANS))
        for device, room_name in rows
    ]


def _scan_counts(session: Session, scope: SchoolScope, *, since: datetime) -> dict[str, ScanCounts]:
    """Per device id of the school, in one query over the (pruned) processed scans."""
    recent = col(ProcessedScan.processed_at) >= since
    rows = session.exec(
        select(
            ProcessedScan.device_id,
            func.max(ProcessedScan.processed_at),
            func.sum(case((recent, 1), else_=0)),
        )
        .join(Device, col(Device.id) == col(ProcessedScan.device_id))
        .where(Device.school_id == scope.school_id)
        .group_by(col(ProcessedScan.device_id))
    ).all()
    return {device_id: ScanCounts(last, int(scans or 0)) for device_id, last, scans in rows}
