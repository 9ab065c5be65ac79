"""Home groups (OGS-Gruppen) of one school: the list, who leads one, and its roster with
where each child is now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlmodel import Session, col, select

from edge_bridge.errors import NotFoundError
from edge_bridge.models import ActiveGroup, OgsGroup, OgsGroupLeader, Room, Student, Visit
from edge_bridge.queries import SchoolScope


@dataclass(frozen=True, slots=True)
class HomeGroupSummary:
    """A home group with its room, if it has one."""

    id: int
    name: str
    room_id: int | None
    room_name: str | None


@dataclass(frozen=True, slots=True)
class RosterChild:
    """One child of a home group and the active group they are in now, if any."""

    student_id: int
    student_name: str
    status: Literal["present", "away"]
    active_group_id: int | None
    room_name: str | None
    since: datetime | None


def get_home_group(session: Session, scope: SchoolScope, *, group_id: int) -> OgsGroup:
    """The school's home group with this id; else `NotFoundError` (missing or another's)."""
    group = session.get(OgsGroup, group_id)
    if group is None or group.school_id != scope.school_id:
        msg = f"Home group {group_id} not found"
        raise NotFoundError(msg)
    return group


def is_leader(session: Session, scope: SchoolScope, *, group_id: int, staff_id: int) -> bool:
    """Whether the staff member leads this home group of the school."""
    leader = session.get(OgsGroupLeader, (group_id, staff_id))
    return leader is not None and leader.school_id == scope.school_id


def list_home_groups(
    session: Session, scope: SchoolScope, *, led_by: int | None = None
) -> list[HomeGroupSummary]:
    """The school's home groups, or only those `led_by` leads, by id."""
    query = (
        select(OgsGroup, Room.name)
        .join(Room, col(Room.id) == col(OgsGroup.room_id), isouter=True)
        .where(OgsGroup.school_id == scope.school_id)
    )
    if led_by is not None:
        query = query.join(
            OgsGroupLeader, col(OgsGroupLeader.ogs_group_id) == col(OgsGroup.id)
        ).where(OgsGroupLeader.staff_id == led_by)
    return [
        HomeGroupSummary(id=group.id, name=group.name, room_id=group.room_id, room_name=room_name)
        for group, room_name in session.exec(query.order_by(col(OgsGroup.id))).all()
    ]


def list_roster(session: Session, scope: SchoolScope, *, group_id: int) -> list[RosterChild]:
    """The children of the school's home group by last and first name, each present (with
    the group, room and time of their open visit) or away."""
    rows = session.exec(
        select(Student, ActiveGroup.id, Visit.entry_time, Room.name)
        .join(
            Visit,
            (col(Visit.student_id) == col(Student.id)) & col(Visit.exit_time).is_(None),
            isouter=True,
        )
        .join(
            ActiveGroup,
            (col(ActiveGroup.id) == col(Visit.active_group_id))
            & (col(ActiveGroup.school_id) == scope.school_id),
            isouter=True,
        )
        .join(Room, col(Room.id) == col(ActiveGroup.room_id), isouter=True)
        .where(Student.ogs_group_id == group_id, Student.school_id == scope.school_id)
        .order_by(col(Student.last_name), col(Student.first_name))
    ).all()
    return [
        RosterChild(
            student_id=student.id,
            student_name=student.display_name,
            status="present" if active_group_id else "away",
            active_group_id=active_group_id,
            room_name=room_name,
            since=since if active_group_id else None,
        )
        for student, active_group_id, since, room_name in rows
    ]
