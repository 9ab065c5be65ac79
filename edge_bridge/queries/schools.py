"""One school's health as counts: what the operator's school list (`GET /api/schools`) shows.

Like every query here it takes the school; the operator's view asks once per school. What it
returns is why the operator may see it: how many rooms, students, staff, readers (and of
those, online) and open visits the school has, and the time of its last processed scan;
never a child's or a staff member's name, id or tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, func, select

from edge_bridge.models import ActiveGroup, Device, ProcessedScan, Room, Staff, Student, Visit
from edge_bridge.queries import SchoolScope

__all__ = ["SchoolCounts", "school_counts"]


@dataclass(frozen=True, slots=True)
class SchoolCounts:
    """A school's size and state, without a single name."""

    rooms: int
    students: int
    staff: int
    devices: int
    devices_online: int
    open_visits: int
    last_scan_at: datetime | None  # its readers' latest processed scan (pruned history)


def _count(school_id: Any, scope: SchoolScope, *where: Any) -> Any:
    return select(func.count()).where(school_id == scope.school_id, *where).scalar_subquery()


def school_counts(session: Session, scope: SchoolScope) -> SchoolCounts:
    """The scope's school's counts, in one statement of scalar subqueries."""
    open_visits = (
        select(func.count())
        .select_from(Visit)
        .join(ActiveGroup, col(ActiveGroup.id) == col(Visit.active_group_id))
        .where(ActiveGroup.school_id == scope.school_id, col(Visit.exit_time).is_(None))
        .scalar_subquery()
    )
    last_scan = (
        select(func.max(ProcessedScan.processed_at))
        .join(Device, col(Device.id) == col(ProcessedScan.device_id))
        .where(Device.school_id == scope.school_id)
        .scalar_subquery()
    )
    row = session.exec(
        select(
            _count(col(Room.school_id), scope),
            _count(col(Student.school_id), scope),
            _count(col(Staff.school_id), scope),
            _count(col(Device.school_id), scope),
            _count(col(Device.school_id), scope, col(Device.online).is_(True)),
            open_visits,
            last_scan,
        )
    ).one()
    return SchoolCounts(*row)
