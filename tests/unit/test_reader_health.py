"""Reader health (edge_bridge/reader_health.py): the stored reader with the live state laid
over it, as the office view's reader table shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge_bridge.models import Device
from edge_bridge.presence import ReaderState
from edge_bridge.reader_health import NO_SCANS, ScanCounts, StoredReader, reader_health

SAVED = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LIVE = SAVED + timedelta(seconds=4)  # moved in memory, not flushed yet


class FakePresence:
    """What `reader_health` asks of `Presence`: the live state and rejected scans today."""

    def __init__(self, states: dict[str, ReaderState], rejected: dict[str, int]) -> None:
        self.states, self.rejected = states, rejected

    def state(self, device_id: str) -> ReaderState | None:
        return self.states.get(device_id)

    def rejected_today(self, device_id: str) -> int:
        return self.rejected.get(device_id, 0)


def _stored(device_id: str, *, scans: ScanCounts = NO_SCANS) -> StoredReader:
    device = Device(
        id=device_id, school_id=1, room_id=1, online=False, last_seen=SAVED, firmware="1.0"
    )
    return StoredReader(device, "Raum 101", scans)


def test_the_live_state_wins_over_the_stored_row_and_the_scans_come_from_the_database() -> None:
    presence = FakePresence({"reader-101": ReaderState(True, LIVE, "1.2")}, {"reader-101": 3})
    scans = ScanCounts(SAVED - timedelta(minutes=1), 7)

    [health] = reader_health([_stored("reader-101", scans=scans)], presence)

    assert (health.online, health.last_seen, health.firmware) == (True, LIVE, "1.2")
    assert (health.last_scan, health.scans_today, health.rejected_today) == (scans.last_scan, 7, 3)
    assert (health.device_id, health.room_id, health.room_name) == ("reader-101", 1, "Raum 101")


def test_a_reader_the_bridge_has_no_live_state_of_shows_its_stored_row() -> None:
    presence = FakePresence({"reader-101": ReaderState(True, None, None)}, {})

    other, partial = reader_health([_stored("reader-mensa"), _stored("reader-101")], presence)
    [without_presence] = reader_health([_stored("reader-101")], None)

    assert (other.online, other.last_seen, other.firmware) == (False, SAVED, "1.0")
    assert (partial.online, partial.last_seen, partial.firmware) == (True, SAVED, "1.0")
    assert (without_presence.online, without_presence.rejected_today) == (False, 0)
    assert without_presence.scans_today == 0 and without_presence.last_scan is None
