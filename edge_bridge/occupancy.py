"""Room occupancy: how many children are in each room now, and how that went over a day.

The day's curve per room is a step function built from the visits that overlap the day:
each entry adds one, each exit takes one away, in time order. Its last point is the count
now (for today) or at the end of the day. The office view reads one school's rooms and
visits for it in `edge_bridge/queries/office.py`; the live counts here serve the admins'
events and the room list, each for one school.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, func, select

from edge_bridge.events import EventType, NewEvent
from edge_bridge.models import ActiveGroup, Room, Visit


@dataclass(slots=True)
class RoomOccupancy:
    """One room: children present now, and (time, count) steps over the day."""

    room_id: int
    room_name: str
    present: int = 0
    points: list[tuple[datetime, int]] = field(default_factory=list)


def present_by_room(session: Session, *, school_id: int | None = None) -> dict[int, int]:
    """Children with an open visit, per room (of one school, or of all for None)."""
    query = (
        select(ActiveGroup.room_id, func.count())
        .join(Visit, col(Visit.active_group_id) == col(ActiveGroup.id))
        .where(col(Visit.exit_time).is_(None))
        .group_by(col(ActiveGroup.room_id))
    )
    if school_id is not None:
        query = query.where(ActiveGroup.school_id == school_id)
    return dict(session.exec(query).all())


def occupancy_events(session: Session, room_ids: set[int]) -> list[NewEvent]:
    """The admins' `occupancy` events after a change: children now in each of these rooms,
    one event per school (a batch of scans may touch rooms of several)."""
    rows = session.exec(
        select(Room.id, Room.name, Room.school_id).where(col(Room.id).in_(room_ids))
    ).all()
    schools: dict[int, list[tuple[int, str]]] = {}
    for room_id, name, school_id in rows:
        schools.setdefault(school_id, []).append((room_id, name))
    events = []
    for school_id, rooms in sorted(schools.items()):
        present = present_by_room(session, school_id=school_id)
        data = [
            {
                "room_id": str(room_id),
                "room_name": name,
                "student_count": present.get(room_id, 0),
            }
            for room_id, name in sorted(rooms)
        ]
        events.append(NewEvent.for_admins(EventType.OCCUPANCY, school_id=school_id, rooms=data))
    return events


def occupancy_curves(
    rooms: Iterable[tuple[int, str]],
    visits: Iterable[tuple[int, datetime, datetime | None]],
    *,
    start: datetime,
    until: datetime,
) -> list[RoomOccupancy]:
    """Each room (id, name) with its curve from `start` to `until`, from the visits
    (room id, entry, exit or None) that overlap that span; visits of other rooms are ignored."""
    curves = {room_id: RoomOccupancy(room_id, name) for room_id, name in rooms}
    changes: list[tuple[datetime, int, int]] = []  # (when, room, +1/-1)
    for room_id, entry, exit_ in visits:
        changes.append((max(entry, start), room_id, 1))
        if exit_ is not None and exit_ < until:
            changes.append((exit_, room_id, -1))
    changes.sort(key=lambda change: (change[0], change[2]))  # exits first at the same instant
    for room in curves.values():
        room.points.append((start, 0))
    for when, room_id, delta in changes:
        room = curves.get(room_id)
        if room is None:
            continue
        room.present += delta
        if room.points[-1][0] == when:
            room.points[-1] = (when, room.present)
        else:
            room.points.append((when, room.present))
    for room in curves.values():
        room.points.append((until, room.present))
    return list(curves.values())
