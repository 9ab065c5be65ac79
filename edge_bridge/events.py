"""Realtime events: the types of CONTRACT §5, the envelope, and what services hand to the log.

A service describes a change as a `NewEvent` (no id yet). The event log stores it in the same
transaction as the change and returns an `Event` with its id and time; only then is it
published. Routing keys say who receives it: the supervisors of `route_active_group_id` and the
leaders of `route_ogs_group_id`, of `school_id` only: an event without a school reaches no
stream, so a service that forgot the school loses an event rather than leaking it. The
routing keys are kept apart from the envelope's `active_group_id` because
an automated check-out at the end of an activity names the group but goes only to the leaders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from edge_bridge.wire import format_ts


class EventType(StrEnum):
    """Event names on the stream (CONTRACT §5)."""

    STUDENT_CHECKIN = "student_checkin"
    STUDENT_CHECKOUT = "student_checkout"
    ACTIVITY_START = "activity_start"
    ACTIVITY_END = "activity_end"
    ACTIVITY_UPDATE = "activity_update"
    DEVICE_STATUS = "device_status"  # admins: a reader went online or offline
    OCCUPANCY = "occupancy"  # admins: children per room after a change
    CONNECTED = "connected"
    RESYNC = "resync"


class Source(StrEnum):
    """Where a visit change came from."""

    RFID = "rfid"
    MANUAL = "manual"
    AUTOMATED = "automated"


# Display-level fields only: never birthdays, addresses, guardians or tags.
ALLOWED_DATA_KEYS = frozenset(
    {
        "student_id",
        "student_name",
        "student_ids",
        "ogs_group_id",
        "activity_name",
        "room_id",
        "room_name",
        "supervisor_ids",
        "source",
        "device_id",  # device_status
        "online",
        "firmware",
        "rooms",  # occupancy: [{"room_id": "1", "room_name", "student_count": 3}], ids as strings
    }
)


def _stringify(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_stringify(item) for item in value]
    return value


def clean_data(data: dict[str, Any]) -> dict[str, Any]:
    """Keep display-level keys, turn ids into strings, drop None values."""
    unknown = set(data) - ALLOWED_DATA_KEYS
    if unknown:
        msg = f"event data may only carry display fields, got: {sorted(unknown)}"
        raise ValueError(msg)
    return {key: _stringify(value) for key, value in data.items() if value is not None}


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A change described by a service, before the event log gives it an id."""

    type: EventType
    active_group_id: int | None
    data: dict[str, Any]
    route_active_group_id: int | None
    route_ogs_group_id: int | None = None
    route_admin: bool = False  # the school's admins receive it (the office view)
    school_id: int | None = None  # whose streams may receive it; None: no one's

    @classmethod
    def for_admins(cls, type_: EventType, *, school_id: int, **data: Any) -> NewEvent:
        """An event for the school's admins' streams only (reader health, occupancy)."""
        return cls(type_, None, clean_data(data), None, None, True, school_id)

    @classmethod
    def for_group(
        cls,
        type_: EventType,
        active_group_id: int,
        *,
        school_id: int,
        ogs_group_id: int | None = None,
        **data: Any,
    ) -> NewEvent:
        """An event for a group's supervisors (and, if given, the student's home-group leaders)."""
        if ogs_group_id is not None:
            data["ogs_group_id"] = ogs_group_id
        return cls(
            type_,
            active_group_id,
            clean_data(data),
            active_group_id,
            ogs_group_id,
            False,
            school_id,
        )

    @classmethod
    def for_leaders(
        cls,
        type_: EventType,
        active_group_id: int,
        *,
        school_id: int,
        ogs_group_id: int,
        **data: Any,
    ) -> NewEvent:
        """An event only the leaders of a home group receive."""
        data["ogs_group_id"] = ogs_group_id
        return cls(type_, active_group_id, clean_data(data), None, ogs_group_id, False, school_id)


@dataclass(frozen=True, slots=True)
class Event:
    """A stored event: id from the event log, strictly increasing in commit order."""

    id: int
    type: EventType
    active_group_id: int | None
    data: dict[str, Any] = field(compare=False)
    timestamp: datetime
    route_active_group_id: int | None = None
    route_ogs_group_id: int | None = None
    route_admin: bool = False
    school_id: int | None = None  # whose streams may receive it; None: no one's

    def envelope(self) -> dict[str, Any]:
        """The JSON object clients see (CONTRACT §5); all ids are strings."""
        return {
            "type": str(self.type),
            "active_group_id": None if self.active_group_id is None else str(self.active_group_id),
            "data": self.data,
            "timestamp": format_ts(self.timestamp),
        }

    def __repr__(self) -> str:
        return (
            f"Event(id={self.id}, type={self.type}, active_group_id={self.active_group_id}, "
            f"route=({self.route_active_group_id}, {self.route_ogs_group_id}"
            f"{', admin' if self.route_admin else ''}), school={self.school_id})"
        )

    @classmethod
    def stream_local(cls, type_: EventType, *, id_: int = 0, **data: Any) -> Event:
        """A frame that is not in the log (`resync`): stamped now."""
        return cls(id_, type_, None, data, datetime.now(UTC))
