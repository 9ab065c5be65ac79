"""Request and response bodies of the REST API; every id goes out as a string.

Responses are built from the query results of `edge_bridge/queries/` (frozen dataclasses
with integer ids) by `Model.model_validate(row)`: the response models read attributes
(`from_attributes`), and an `IdStr` field turns an integer id into its string.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_serializer,
)

from edge_bridge.wire import format_ts


def _id_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


IdStr = Annotated[str, BeforeValidator(_id_text)]  # an id as the API shows it: a string
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @field_serializer("*", when_used="json-unless-none", check_fields=False)
    def _times(self, value: object) -> object:
        return format_ts(value) if isinstance(value, datetime) else value


class ErrorOut(BaseModel):
    """Every error: `{"detail": …}`."""

    detail: str | list[dict[str, object]]


class ValidationErrorOut(ErrorOut):
    """422: `detail` names each bad field and says what is wrong; `errors` lists them one by one."""

    detail: str
    errors: list[dict[str, object]] = []


# --- auth ---


class LoginIn(BaseModel):
    """Email and password for `POST /api/auth/login`."""

    model_config = ConfigDict(extra="forbid")
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class RefreshIn(BaseModel):
    """The body of `/api/auth/refresh` and `/api/auth/logout`: the login's refresh token.

    Refresh needs it (no body: 401 "Refresh token missing"; no cookie carries a refresh
    token, the `access_token` cookie only the access token). Logout may go without a body:
    it then only drops the access cookie and revokes nothing.
    """

    refresh_token: str = Field(min_length=10, max_length=4096)


class TokenOut(BaseModel):
    """Tokens issued by login and refresh."""

    access_token: str
    refresh_token: str | None = None
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


# --- groups and visits ---


class ActiveGroupCreate(BaseModel):
    """Start an activity in a room."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    room_id: Annotated[int, Field(ge=1)]


class ActiveGroupPublic(_Out):
    """A running activity as the dashboard shows it."""

    id: IdStr
    name: str
    room_id: IdStr
    room_name: str
    started_at: datetime
    supervisor_ids: list[IdStr]
    student_count: int = 0


class ActiveGroupEnded(_Out):
    """The result of ending an activity."""

    id: IdStr
    ended_at: datetime
    student_ids: list[IdStr]


class VisitCreate(BaseModel):
    """Manual check-in."""

    model_config = ConfigDict(extra="forbid")
    student_id: Annotated[int, Field(ge=1)]


class VisitDisplay(_Out):
    """One present student in a group's list."""

    student_id: IdStr
    student_name: str
    entry_time: datetime


class ManualResult(BaseModel):
    """The effect of a manual check-in or check-out."""

    result: str
    student_id: IdStr
    active_group_id: IdStr


class OgsGroupPublic(_Out):
    """A home group as listed in `/api/me`."""

    id: IdStr
    name: str
    room_id: IdStr | None = None
    room_name: str | None = None


class MePublic(BaseModel):
    """The signed-in staff member and what they supervise and lead."""

    id: IdStr
    name: str
    email: str
    admin: bool
    active_groups: list[ActiveGroupPublic]
    ogs_groups: list[OgsGroupPublic]


class RosterEntry(_Out):
    """One child of a home group with where they are now."""

    student_id: IdStr
    student_name: str
    status: Literal["present", "away"]
    active_group_id: IdStr | None = None
    room_name: str | None = None
    since: datetime | None = None


class DevicePublic(_Out):
    """A reader with its room, presence and today's scans (the office's reader health)."""

    id: str
    room_id: IdStr
    room_name: str
    active: bool
    online: bool
    last_seen: datetime | None = None
    firmware: str | None = None
    last_scan: datetime | None = None
    scans_today: int = 0
    rejected_today: int = 0


class RoomPublic(_Out):
    """A room and the activity running there, if any."""

    id: IdStr
    name: str
    active_group_id: IdStr | None = None
    student_count: int = 0  # children checked in there now


class StudentPublic(_Out):
    """A student for search results."""

    student_id: IdStr
    student_name: str
    ogs_group_id: IdStr | None = None


class StudentTag(_Out):
    """Admin only: a student's tag, for the simulator."""

    student_id: IdStr
    student_name: str
    tag: str


class SseStats(BaseModel):
    """Open streams and subscribers per active group."""

    total_clients: int
    groups: dict[str, int]
    ogs_groups: dict[str, int] = {}


# --- office view (admins) ---


class ActorOut(BaseModel):
    """Who opened or closed a visit: a reader (`rfid`), a staff member (`manual`), the system."""

    source: str | None
    device_id: str | None = None
    staff_id: IdStr | None = None
    staff_name: str | None = None
    label: str  # a short German line for display ("Leser reader-101", "Frau Schmidt", …)


class StayOut(_Out):
    """One visit of the day."""

    active_group_id: IdStr
    activity_name: str
    room_id: IdStr
    room_name: str
    entry_time: datetime
    exit_time: datetime | None = None
    entered_by: ActorOut
    left_by: ActorOut | None = None
    exit_reason: str | None = None


class AttendanceOut(_Out):
    """One child's day: arrival, departure, who checked them in and out, the rooms between."""

    student_id: IdStr
    student_name: str
    ogs_group_id: IdStr | None = None
    ogs_group_name: str | None = None
    arrival: datetime
    departure: datetime | None = None
    present: bool
    checked_in_by: ActorOut
    checked_out_by: ActorOut | None = None
    departure_reason: str | None = None
    stays: list[StayOut]


class OccupancyPoint(_Out):
    """The number of children in a room from `t` on."""

    t: datetime
    count: int


class RoomOccupancyOut(BaseModel):
    """A room's children now and its curve over the day."""

    room_id: IdStr
    room_name: str
    present: int
    points: list[OccupancyPoint]


class OccupancyOut(BaseModel):
    """Occupancy of every room over one day (school time zone)."""

    date: str
    timezone: str
    rooms: list[RoomOccupancyOut]
