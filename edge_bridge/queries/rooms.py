"""Rooms of one school with the activity running in each and the children there now."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, func, select

from edge_bridge.models import ActiveGroup, Room, Visit
from edge_bridge.queries import SchoolScope


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room, its running active group if any, and how many children are checked in."""

    id: int
    name: str
    active_group_id: int | None
    student_count: int


def list_rooms(session: Session, scope: SchoolScope) -> list[RoomSummary]:
    """Every room of the school by id, in one query."""
    running = (col(ActiveGroup.room_id) == col(Room.id)) & col(ActiveGroup.ended_at).is_(None)
    present = (col(Visit.active_group_id) == col(ActiveGroup.id)) & col(Visit.exit_time).is_(None)
    rows = session.exec(
        select(Room, ActiveGroup.id, func.count(col(Visit.id)))
        .join(ActiveGroup, running, isouter=True)
        .join(Visit, present, isouter=True)
        .where(Room.school_id == scope.school_id)
        .group_by(col(Room.id), col(ActiveGroup.id))
        .order_by(col(Room.id))
    ).all()
    return [
        RoomSummary(id=room.id, name=room.name, active_group_id=group_id, student_count=count)
        for room, group_id, count in rows
    ]
