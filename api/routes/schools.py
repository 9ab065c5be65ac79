"""`GET /api/schools` (operator only): every school with its health, as counts.

The operator (`edge-bridge token --superadmin`) runs the deployment for many schools and sees
none of their records: per school its name, time zone, counts of rooms, students, staff,
readers (online), open visits and open event streams, and its last scan time. No child's or
staff member's name appears here. A staff token, an admin's included, gets 403: an admin is
an admin of one school.

The schools are the staff directory's (so a school an import just added shows up when the
bridge next reads it, within seconds); each school's counts go through the scoped query
module like every other read (`edge_bridge/queries/schools.py`), one scope per school.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, field_serializer

from api.deps import DirectoryDep, HubDep, Operator, SettingsDep, StoreDep
from api.schemas import ErrorOut, IdStr
from edge_bridge.config import Settings
from edge_bridge.directory import SchoolEntry, StaffDirectory
from edge_bridge.queries import SchoolScope
from edge_bridge.queries.schools import SchoolCounts, school_counts
from edge_bridge.wire import format_ts

router = APIRouter(prefix="/api", tags=["schools"])


class SchoolHealthPublic(BaseModel):
    """A school's health for the operator: counts only, no child's or staff member's name."""

    id: IdStr
    name: str
    timezone: str | None
    rooms: int
    students: int
    staff: int
    devices: int
    devices_online: int
    open_visits: int
    streams: int  # open event streams of the school's staff, on this instance
    last_scan_at: datetime | None

    @field_serializer("last_scan_at", when_used="json-unless-none")
    def _time(self, value: datetime) -> str:
        return format_ts(value)


def _scope(school: SchoolEntry, directory: StaffDirectory, settings: Settings) -> SchoolScope:
    """The operator's one way across schools: a scope per school, for its counts only."""
    return SchoolScope(school.id, directory.school_timezone(school.id, settings.timezone))


def _public(school: SchoolEntry, counts: SchoolCounts, streams: int) -> SchoolHealthPublic:
    return SchoolHealthPublic(
        id=school.id, name=school.name, timezone=school.timezone, streams=streams, **asdict(counts)
    )


@router.get(
    "/schools",
    response_model=list[SchoolHealthPublic],
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)
async def get_schools(
    operator: Operator,
    directory: DirectoryDep,
    settings: SettingsDep,
    store: StoreDep,
    hub: HubDep,
) -> list[SchoolHealthPublic]:
    """Every school by id: counts read per school, open streams from the hub."""
    schools = directory.schools()
    scopes = [_scope(school, directory, settings) for school in schools]
    counts = await store.read(lambda session: [school_counts(session, s) for s in scopes])
    # `HubStats.schools` (open streams per school) arrives with the per-school hub.
    streams: dict[int, int] = getattr(hub.stats(), "schools", {})
    return [
        _public(school, count, streams.get(school.id, 0))
        for school, count in zip(schools, counts, strict=True)
    ]
