"""Active groups of one school: the running ones with their supervisors and head counts, one
by id, whether a staff member supervises it, and the children present in it.

An ended group, a missing one and one of another school are all "not found", with the same
message, so the answer tells a caller nothing about other schools' groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, func, select

from edge_bridge.errors import NotFoundError
from edge_bridge.models import ActiveGroup, Room, Student, Supervision, Visit
from edge_bridge.queries import SchoolScope


@dataclass(frozen=True, slots=True)
class ActiveGroupSummary:
    """A running activity as the dashboard lists it."""

    id: int
    name: str
    room_id: int
    room_name: str
    started_at: datetime
    supervisor_ids: tuple[int, ...]
    student_count: int  # children with an open visit in it


@dataclass(frozen=True, slots=True)
class PresentStudent:
    """A child checked in to a group now."""

    student_id: int
    student_name: str
    entry_time: datetime


def _not_found(group_id: int) -> NotFoundError:
    msg = f"Active group {group_id} not found"
    return NotFoundError(msg)


def get_running_group(session: Session, scope: SchoolScope, *, group_id: int) -> ActiveGroup:
    """The running group of the scope's school with this id; else `NotFoundError`."""
    group = session.get(ActiveGroup, group_id)
    if group is None or group.school_id != scope.school_id or group.ended_at is not None:
        raise _not_found(group_id)
    return group


def is_supervisor(session: Session, scope: SchoolScope, *, group_id: int, staff_id: int) -> bool:
    """Whether the staff member supervises this running group of the school now."""
    found = session.exec(
        select(Supervision.id)
        .join(ActiveGroup, col(ActiveGroup.id) == col(Supervision.active_group_id))
        .where(
            Supervision.active_group_id == group_id,
            Supervision.staff_id == staff_id,
            col(Supervision.ended_at).is_(None),
            ActiveGroup.school_id == scope.school_id,
        )
    ).first()
    return found is not None


def _summaries(session: Session, query: Any) -> list[ActiveGroupSummary]:
    """Summaries of the (group, room name) rows of `query`: two more queries in all."""
    rows = session.exec(query).all()
    ids = [group.id for group, _ in rows]
    supervisors: dict[int, list[int]] = {}
    for group_id, staff_id in session.exec(
        select(Supervision.active_group_id, Supervision.staff_id)
        .where(col(Supervision.active_group_id).in_(ids), col(Supervision.ended_at).is_(None))
        .order_by(col(Supervision.staff_id))
    ).all():
        supervisors.setdefault(group_id, []).append(staff_id)
    counts = dict(
        session.exec(
            select(Visit.active_group_id, func.count())
            .where(col(Visit.active_group_id).in_(ids), col(Visit.exit_time).is_(None))
            .group_by(col(Visit.active_group_id))
        ).all()
    )
    return [
        ActiveGroupSummary(
            id=group.id,
            name=group.name,
            room_id=group.room_id,
            room_name=room_name,
            started_at=group.started_at,
            supervisor_ids=tuple(supervisors.get(group.id, [])),
            student_count=counts.get(group.id, 0),
        )
        for group, room_name in rows
    ]


def _running(scope: SchoolScope) -> Any:
    return (
        select(ActiveGroup, Room.name)
        .join(Room, col(Room.id) == col(ActiveGroup.room_id))
        .where(ActiveGroup.school_id == scope.school_id, col(ActiveGroup.ended_at).is_(None))
        .order_by(col(ActiveGroup.id))
    )


def list_active_groups(
    session: Session, scope: SchoolScope, *, supervised_by: int | None = None
) -> list[ActiveGroupSummary]:
    """The school's running groups, or only those `supervised_by` supervises, by id."""
    query = _running(scope)
    if supervised_by is not None:
        query = query.join(
            Supervision, col(Supervision.active_group_id) == col(ActiveGroup.id)
        ).where(Supervision.staff_id == supervised_by, col(Supervision.ended_at).is_(None))
    return _summaries(session, query)


def get_active_group_summary(
    session: Session, scope: SchoolScope, *, group_id: int
) -> ActiveGroupSummary:
    """One running group of the school, summarized; else `NotFoundError`."""
    found = _summaries(session, _running(scope).where(ActiveGroup.id == group_id))
    if not found:
        raise _not_found(group_id)
    return found[0]


def list_present_students(
    session: Session, scope: SchoolScope, *, group_id: int
) -> list[PresentStudent]:
    """The children checked in to the school's group now, by last and first name."""
    rows = session.exec(
        select(Visit.student_id, Student.first_name, Student.last_name, Visit.entry_time)
        .join(Student, col(Student.id) == col(Visit.student_id))
        .join(ActiveGroup, col(ActiveGroup.id) == col(Visit.active_group_id))
        .where(
            Visit.active_group_id == group_id,
            col(Visit.exit_time).is_(None),
            ActiveGroup.school_id == scope.school_id,
            Student.school_id == scope.school_id,
        )
        .order_by(col(Student.last_name), col(Student.first_name))
    ).all()
    return [
        PresentStudent(student_id=sid, student_name=f"{first} {last}", entry_time=entry)
        for sid, first, last, entry in rows
    ]
