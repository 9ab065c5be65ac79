"""edge_bridge/presence.py with two schools: a reader's events and school day are its school's."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine

from edge_bridge.events import EventType
from edge_bridge.presence import Presence
from edge_bridge.store import Announcer, Store
from edge_ops.importer import import_data
from tests.factories import RecordingBroadcaster

BERLIN = ZoneInfo("Europe/Berlin")
AUCKLAND = ZoneInfo("Pacific/Auckland")


@pytest.fixture
def two_schools(school_engine: Engine) -> Engine:
    """The fixture school (school 1) and school 2 with one reader, `reader-nord-1`."""
    document = {
        "school": {"id": 2, "name": "Schule Nord", "timezone": "Pacific/Auckland"},
        "rooms": [{"id": 21, "name": "Nordraum"}],
        "devices": [{"id": "reader-nord-1", "room_id": 21, "active": True}],
    }
    import_data(school_engine, json.dumps(document).encode())
    return school_engine


def test_a_readers_status_event_goes_to_its_own_schools_admins(two_schools: Engine) -> None:
    broadcaster = RecordingBroadcaster()
    store = Store(two_schools, announcer=Announcer(broadcaster))
    presence = Presence(store)
    at = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)

    async def scenario() -> None:
        await presence.load()
        await presence.update("reader-nord-1", online=True, firmware="2.1", at=at)
        await presence.update("reader-101", online=True, firmware=None, at=at)

    asyncio.run(scenario())
    store.close()

    statuses = [e for e in broadcaster.events if e.type is EventType.DEVICE_STATUS]
    assert [(e.data["device_id"], e.school_id, e.route_admin) for e in statuses] == [
        ("reader-nord-1", 2, True),
        ("reader-101", 1, True),
    ]
    assert statuses[0].data["room_name"] == "Nordraum"


def test_rejected_today_counts_in_the_readers_schools_time_zone(two_schools: Engine) -> None:
    zones = {2: AUCKLAND}
    store = Store(two_schools)
    presence = Presence(store, tz=BERLIN, timezone_of=lambda school: zones.get(school, BERLIN))
    asyncio.run(presence.load())
    store.close()
    rejected_at = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # 11:00 Berlin, 23:00 Auckland
    later = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # 13:00 Berlin, 01:00 next day Auckland

    presence.rejected("reader-101", at=rejected_at)
    presence.rejected("reader-nord-1", at=rejected_at)

    assert presence.rejected_today("reader-101", now=later) == 1  # still 2 December in Berlin
    assert presence.rejected_today("reader-nord-1", now=later) == 0  # 3 December in Auckland
    assert presence.rejected_today("reader-nord-1", now=rejected_at) == 1
