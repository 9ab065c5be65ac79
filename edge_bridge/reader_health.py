"""Reader health for the office view: each reader's room, live state and today's scans.

The stored side (device rows, the last processed scan and how many since the school day
began) is read for one school in `edge_bridge/queries/office.py`; the live side (online,
last seen, firmware, rejected scans) comes from `Presence`, which knows newer values than
the database between its flushes. Rejected scans leave no processed row (nothing
happened); `Presence` counts those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from edge_bridge.models import Device

if TYPE_CHECKING:
    from edge_bridge.presence import ReaderState


@dataclass(frozen=True, slots=True)
class ScanCounts:
    """One reader's processed scans: the latest, and how many since `since`."""

    last_scan: datetime | None
    scans: int


NO_SCANS = ScanCounts(None, 0)


class LiveReaders(Protocol):
    """What the office view asks of `Presence`."""

    def state(self, device_id: str) -> ReaderState | None: ...

    def rejected_today(self, device_id: str) -> int: ...


@dataclass(frozen=True, slots=True)
class StoredReader:
    """A reader as the database knows it: the row, its room's name, its processed scans."""

    device: Device
    room_name: str
    scans: ScanCounts


@dataclass(frozen=True, slots=True)
class ReaderHealth:
    """One row of the office view's reader table."""

    device_id: str
    room_id: int
    room_name: str
    active: bool
    online: bool
    last_seen: datetime | None
    firmware: str | None
    last_scan: datetime | None
    scans_today: int
    rejected_today: int


def reader_health(
    readers: Iterable[StoredReader], presence: LiveReaders | None
) -> list[ReaderHealth]:
    """The stored readers with the live state laid over them (when the bridge has one)."""
    result = []
    for stored in readers:
        device = stored.device
        live = presence.state(device.id) if presence else None
        result.append(
            ReaderHealth(
                device_id=device.id,
                room_id=device.room_id,
                room_name=stored.room_name,
                active=device.active,
                online=live.online if live else device.online,
                last_seen=live.last_seen if live and live.last_seen else device.last_seen,
                firmware=live.firmware if live and live.firmware else device.firmware,
                last_scan=stored.scans.last_scan,
                scans_today=stored.scans.scans,
                rejected_today=presence.rejected_today(device.id) if presence else 0,
            )
        )
    return result
