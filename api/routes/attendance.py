"""`GET /api/attendance` (admins): their school's record of a day per child, as JSON or CSV.

The day is the school's local day (its time zone); a `group` or `room` of another school
answers 404, like a missing one.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from api.deps import AdminStaff, School, StoreDep
from api.schemas import ActorOut, AttendanceOut, ErrorOut, StayOut, ValidationErrorOut
from edge_bridge.attendance import ActorRef, AttendanceRecord
from edge_bridge.attendance_csv import iter_csv
from edge_bridge.models import utcnow
from edge_bridge.queries.office import attendance_for_day
from edge_bridge.schoolday import local_day

router = APIRouter(prefix="/api", tags=["office"])
_CSV = "text/csv"
_RESPONSES = {
    200: {"content": {_CSV: {}}, "description": "JSON, or CSV with `format=csv`"},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut, "description": "No such home group or room in the school"},
    422: {"model": ValidationErrorOut},
}


def _actor(ref: ActorRef | None) -> ActorOut | None:
    if ref is None:
        return None
    staff_id = None if ref.staff_id is None else str(ref.staff_id)
    return ActorOut(
        source=ref.source,
        device_id=ref.device_id,
        staff_id=staff_id,
        staff_name=ref.staff_name,
        label=ref.describe(),
    )


def _record_out(record: AttendanceRecord) -> AttendanceOut:
    stays = [
        StayOut(
            active_group_id=str(stay.active_group_id),
            activity_name=stay.activity_name,
            room_id=str(stay.room_id),
            room_name=stay.room_name,
            entry_time=stay.entry_time,
            exit_time=stay.exit_time,
            entered_by=_actor(stay.entered_by),  # type: ignore[arg-type]
            left_by=_actor(stay.left_by),
            exit_reason=stay.exit_reason,
        )
        for stay in record.stays
    ]
    return AttendanceOut(
        student_id=str(record.student_id),
        student_name=record.student_name,
        ogs_group_id=None if record.ogs_group_id is None else str(record.ogs_group_id),
        ogs_group_name=record.ogs_group_name,
        arrival=record.arrival,
        departure=record.departure,
        present=record.present,
        checked_in_by=_actor(record.checked_in_by),  # type: ignore[arg-type]
        checked_out_by=_actor(record.checked_out_by),
        departure_reason=record.departure_reason,
        stays=stays,
    )


@router.get("/attendance", response_model=list[AttendanceOut], responses=_RESPONSES)
async def get_attendance(
    staff: AdminStaff,
    school: School,
    store: StoreDep,
    day: Annotated[date | None, Query(alias="date", description="YYYY-MM-DD; today")] = None,
    group: Annotated[int | None, Query(ge=1, description="home group id")] = None,
    room: Annotated[int | None, Query(ge=1, description="a room visited")] = None,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
    accept: Annotated[str, Header()] = "",
) -> list[AttendanceOut] | StreamingResponse:
    tz = school.timezone
    wanted = day or local_day(utcnow(), tz)
    records = await store.read(
        lambda s: attendance_for_day(s, school, day=wanted, ogs_group_id=group, room_id=room)
    )
    if format == "csv" or (format is None and _CSV in accept):
        filename = f"anwesenheit-{wanted.isoformat()}.csv"
        return StreamingResponse(
            (piece.encode() for piece in iter_csv(records, day=wanted, tz=tz)),
            media_type=f"{_CSV}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return [_record_out(record) for record in records]
