"""`GET /api/occupancy` (admins): children per room of their school now, and each room's
curve over one of the school's local days."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminStaff, School, StoreDep
from api.schemas import ErrorOut, OccupancyOut, OccupancyPoint, RoomOccupancyOut, ValidationErrorOut
from edge_bridge.models import utcnow
from edge_bridge.queries.office import occupancy_for_day
from edge_bridge.schoolday import local_day

router = APIRouter(prefix="/api", tags=["office"])


@router.get(
    "/occupancy",
    response_model=OccupancyOut,
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        422: {"model": ValidationErrorOut},
    },
)
async def get_occupancy(
    staff: AdminStaff,
    school: School,
    store: StoreDep,
    day: Annotated[date | None, Query(alias="date", description="YYYY-MM-DD; today")] = None,
) -> OccupancyOut:
    now = utcnow()
    wanted = day or local_day(now, school.timezone)
    rooms = await store.read(lambda s: occupancy_for_day(s, school, day=wanted, now=now))
    return OccupancyOut(
        date=wanted.isoformat(),
        timezone=school.timezone.key,
        rooms=[
            RoomOccupancyOut(
                room_id=str(room.room_id),
                room_name=room.room_name,
                present=room.present,
                points=[OccupancyPoint(t=t, count=count) for t, count in room.points],
            )
            for room in rooms
        ],
    )
