"""Reader presence and the device directory the ingest consults.

Online/offline comes from each reader's retained status topic and its Last Will; it is
written to the database only when it changes, together with a `device_status` event for the
admins' streams (the office view shows a reader red within a second of its Last Will). With
several instances each receives every status; a conditional UPDATE lets only the one that
changes the row emit the event.
`last_seen` moves in memory on every scan and is flushed in one statement every few seconds,
so a scan costs no extra write. Rejected scans are counted per reader and school day in
memory (this process's; the office view's "rejected today"), the day in the reader's
school's time zone. A reader's school is its own (`Device.school_id`), for its events too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, or_, select, update

from edge_bridge.events import EventType, NewEvent
from edge_bridge.models import Device, Room, utcnow
from edge_bridge.schoolday import local_day
from edge_bridge.store import Store, Tx
from edge_bridge.tuning import DEVICE_RELOAD_ON_MISS_SECONDS

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ReaderState:
    """What the bridge knows of one reader right now."""

    online: bool
    last_seen: datetime | None
    firmware: str | None = None


class Presence:
    """Devices by id (cached) and their live online state.

    `timezone_of(school_id)` gives a school's time zone for its readers' school day
    (`StaffDirectory.school_timezone`); without it every reader's day is in `tz`.
    """

    def __init__(
        self,
        store: Store,
        *,
        tz: ZoneInfo | None = None,
        timezone_of: Callable[[int], ZoneInfo] | None = None,
    ) -> None:
        self.store = store
        self.tz = tz or ZoneInfo("UTC")
        self._timezone_of = timezone_of
        self._devices: dict[str, Device] = {}
        self._states: dict[str, ReaderState] = {}
        self._dirty_seen: set[str] = set()
        self._loaded_at = 0.0
        self._rejected: dict[str, tuple[date, int]] = {}

    async def load(self) -> None:
        devices = await self.store.read(_all_devices)
        self._devices = {device.id: device for device in devices}
        for device in devices:
            self._states.setdefault(
                device.id, ReaderState(device.online, device.last_seen, device.firmware)
            )
        self._loaded_at = time.monotonic()

    async def device(self, device_id: str) -> Device | None:
        """The device, reloading the directory on a miss (at most every 2 s)."""
        device = self._devices.get(device_id)
        if device is None and time.monotonic() - self._loaded_at > DEVICE_RELOAD_ON_MISS_SECONDS:
            await self.load()
            device = self._devices.get(device_id)
        return device

    async def update(
        self, device_id: str, *, online: bool, firmware: str | None, at: datetime
    ) -> None:
        if await self.device(device_id) is None:
            logger.info("Status from unknown reader ignored device_id=%s", device_id)
            return
        state = self._states.setdefault(device_id, ReaderState(False, None))
        changed = state.online != online or (firmware and firmware != state.firmware)
        firmware = firmware or state.firmware
        if changed:  # saved first: if the database is away, a retry finds it still changed
            saved = await self.store.write(
                lambda tx: _save_state(tx, device_id, online, at, firmware)
            )
            if saved:
                logger.info("Reader %s device_id=%s", "online" if online else "offline", device_id)
        state.online, state.last_seen, state.firmware = online, at, firmware

    def seen(self, device_id: str, at: datetime) -> None:
        state = self._states.setdefault(device_id, ReaderState(True, None))
        state.last_seen = at
        self._dirty_seen.add(device_id)

    async def flush(self) -> None:
        """Write the `last_seen` of readers that scanned since the last flush."""
        dirty, self._dirty_seen = self._dirty_seen, set()
        seen = {d: self._states[d].last_seen for d in dirty if self._states[d].last_seen}
        if seen:
            try:
                await self.store.write(lambda tx: _save_seen(tx, seen))
            except BaseException:
                self._dirty_seen |= dirty  # the next flush tries again
                raise

    def state(self, device_id: str) -> ReaderState | None:
        return self._states.get(device_id)

    def rejected(self, device_id: str, *, at: datetime | None = None) -> None:
        """Count one rejected scan of a known reader for its school day."""
        day = self._school_day(device_id, at or utcnow())
        counted_day, count = self._rejected.get(device_id, (day, 0))
        self._rejected[device_id] = (day, count + 1 if counted_day == day else 1)

    def rejected_today(self, device_id: str, *, now: datetime | None = None) -> int:
        counted_day, count = self._rejected.get(device_id, (None, 0))
        return count if counted_day == self._school_day(device_id, now or utcnow()) else 0

    def _school_day(self, device_id: str, moment: datetime) -> date:
        """The day `moment` falls on where the reader is: its school's time zone."""
        device = self._devices.get(device_id)
        if device is None or self._timezone_of is None:
            return local_day(moment, self.tz)
        return local_day(moment, self._timezone_of(device.school_id))

    def online_count(self) -> int:
        return sum(1 for state in self._states.values() if state.online)


def _all_devices(session: Session) -> list[Device]:
    return list(session.exec(select(Device)).all())


def _save_state(tx: Tx, device_id: str, online: bool, at: datetime, firmware: str | None) -> bool:
    """Store the change and emit `device_status`, unless the row already says so.

    Every instance receives every reader status (a plain subscription); the conditional
    UPDATE lets exactly one of them change the row and emit the event. False: no change.
    """
    changed = tx.session.exec(  # type: ignore[call-overload]
        update(Device)
        .where(
            col(Device.id) == device_id,
            or_(
                col(Device.online).is_distinct_from(online),
                col(Device.firmware).is_distinct_from(firmware),
            ),
        )
        .values(online=online, last_seen=at, firmware=firmware)
    )
    if changed.rowcount == 0:
        return False
    device, room = tx.session.exec(
        select(Device, Room)
        .join(Room, col(Room.id) == col(Device.room_id), isouter=True)
        .where(Device.id == device_id)
    ).one()
    tx.emit(
        NewEvent.for_admins(
            EventType.DEVICE_STATUS,
            school_id=device.school_id,  # the reader's own school: its admins hear of it
            device_id=device_id,
            online=online,
            firmware=firmware,
            room_id=room.id if room else None,
            room_name=room.name if room else None,
        )
    )
    return True


def _save_seen(tx: Tx, seen: dict[str, datetime | None]) -> None:
    for device_id, at in seen.items():
        tx.session.exec(  # type: ignore[call-overload]
            update(Device).where(col(Device.id) == device_id).values(last_seen=at)
        )
