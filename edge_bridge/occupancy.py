"""Room occupancy: how many children are in each room now, and how that went over a day.

The day's curve per room is a step function built from the visits that overlap the day:
each entry adds one, each exit takes one away, in time order. Its last point is the count
now (for today) or at the end of the day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, func, or_, select

from edge_bridge.events import EventType, NewEvent
from edge_bridge.models import ActiveGroup, Room, Visit
from edge_bridge.schoolday import day_bounds


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


def occupancy_for_day(
    session: Session, *, day: date, tz: ZoneInfo, now: datetime
) -> list[RoomOccupancy]:
    """Every room with its curve over `day` (local to `tz`), up to `now` if that is earlier."""
    start, end = day_bounds(day, tz)
    until = min(end, max(now, start))
    rooms = {
        room.id: RoomOccupancy(room.id, room.name)
        for room in session.exec(select(Room).order_by(col(Room.id))).all()
    }
    changes: list[tuple[datetime, int, int]] = []  # (when, room, +1/-1)
    for room_id, entry, exit_ in session.exec(
        select(ActiveGroup.room_id, Visit.entry_time, Visit.exit_time)
        .join(ActiveGroup, col(ActiveGroup.id) == col(Visit.active_group_id))
        .where(
            col(Visit.entry_time) < until,
            or_(col(Visit.exit_time).is_(None), col(Visit.exit_time) >= start),
        )
    ).all():
        changes.append((max(entry, start), room_id, 1))
        if exit_ is not None and exit_ < until:
            changes.append((exit_, room_id, -1))
    changes.sort(key=lambda change: (change[0], change[2]))  # exits first at the same instant
    for room in rooms.values():
        room.points.append((start, 0))
    for when, room_id, delta in changes:
        room = rooms.get(room_id)
        if room is None:
            continue
        room.present += delta
        if room.points[-1][0] == when:
            room.points[-1] = (when, room.present)
        else:
            room.points.append((when, room.present))
    for room in rooms.values():
        room.points.append((until, room.present))
    return list(rooms.values())
