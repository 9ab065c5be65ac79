"""`GET /api/devices` (admin): readers with room, online state, last seen and today's scans."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlmodel import col, select

from api.deps import AdminStaff, SessionDep, SettingsDep
from api.schemas import DevicePublic, ErrorOut
from edge_bridge.models import Device, Room, utcnow
from edge_bridge.reader_health import ScanCounts, scan_counts
from edge_bridge.schoolday import day_bounds, local_day

router = APIRouter(prefix="/api", tags=["devices"])


@router.get(
    "/devices",
    response_model=list[DevicePublic],
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)
def get_devices(
    staff: AdminStaff, session: SessionDep, settings: SettingsDep, request: Request
) -> list[DevicePublic]:
    presence = request.app.state.presence
    today_start, _ = day_bounds(local_day(utcnow(), settings.timezone), settings.timezone)
    counts = scan_counts(session, since=today_start)
    none = ScanCounts(None, 0)
    rows = session.exec(
        select(Device, Room.name)
        .join(Room, col(Room.id) == col(Device.room_id))
        .order_by(col(Device.id))
    ).all()
    result = []
    for device, room_name in rows:
        live = presence.state(device.id) if presence else None
        scans = counts.get(device.id, none)
        result.append(
            DevicePublic(
                id=device.id,
                room_id=str(device.room_id),
                room_name=room_name,
                active=device.active,
                online=live.online if live else device.online,
                last_seen=(live.last_seen if live and live.last_seen else device.last_seen),
                firmware=(live.firmware if live and live.firmware else device.firmware),
                last_scan=scans.last_scan,
                scans_today=scans.scans,
                rejected_today=presence.rejected_today(device.id) if presence else 0,
            )
        )
    return result
