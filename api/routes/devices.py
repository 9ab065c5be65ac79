"""`GET /api/devices` (admin): their school's readers with room, online state, last seen and
the scans of the school's day."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminStaff, PresenceDep, School, SessionDep
from api.schemas import DevicePublic, ErrorOut
from edge_bridge.models import utcnow
from edge_bridge.queries.office import readers_with_scans
from edge_bridge.reader_health import ReaderHealth, reader_health

router = APIRouter(prefix="/api", tags=["devices"])


def _device_out(reader: ReaderHealth) -> DevicePublic:
    return DevicePublic(
        id=reader.device_id,
        room_id=str(reader.room_id),
        room_name=reader.room_name,
        active=reader.active,
        online=reader.online,
        last_seen=reader.last_seen,
        firmware=reader.firmware,
        last_scan=reader.last_scan,
        scans_today=reader.scans_today,
        rejected_today=reader.rejected_today,
    )


@router.get(
    "/devices",
    response_model=list[DevicePublic],
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)
def get_devices(
    staff: AdminStaff, school: School, session: SessionDep, presence: PresenceDep
) -> list[DevicePublic]:
    stored = readers_with_scans(session, school, now=utcnow())
    return [_device_out(reader) for reader in reader_health(stored, presence)]
