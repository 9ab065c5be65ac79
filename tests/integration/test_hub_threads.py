"""edge_bridge/hub.py across threads: `publish_threadsafe` from several threads at once.

Kept out of tests/unit (no threads there, STYLE §10); it needs no broker or server.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from api.sse import encode_event
from edge_bridge.events import Event, EventType
from edge_bridge.hub import Hub

pytestmark = pytest.mark.integration

THREADS, PER_THREAD = 4, 250
WAIT_SECONDS = 5


def make_event(id_: int, active_group_id: int) -> Event:
    return Event(
        id_,
        EventType.STUDENT_CHECKIN,
        active_group_id,
        {},
        datetime.now(UTC),
        route_active_group_id=active_group_id,
    )


def test_publish_threadsafe_from_four_threads_delivers_every_event_once_in_each_threads_order() -> (
    None
):
    async def scenario() -> list[int]:
        hub = Hub(encode=encode_event)  # 1,000 frames of ~200 bytes: well within 1 MiB
        await hub.start()
        start_together = threading.Barrier(THREADS)

        def publish_batch(first_id: int) -> None:
            start_together.wait(timeout=WAIT_SECONDS)
            for event_id in range(first_id, first_id + PER_THREAD):
                hub.publish_threadsafe(make_event(event_id, 10))

        async with hub.subscribe(staff_id=1, active_group_ids=[10]) as sub:
            threads = [
                threading.Thread(target=publish_batch, args=(1 + n * PER_THREAD,))
                for n in range(THREADS)
            ]
            for thread in threads:
                thread.start()
            async with asyncio.timeout(WAIT_SECONDS):
                received = [(await anext(sub)).id for _ in range(THREADS * PER_THREAD)]
            for thread in threads:
                thread.join(timeout=WAIT_SECONDS)
            assert hub.stats().events_published == THREADS * PER_THREAD
            return received

    received = asyncio.run(scenario())

    assert sorted(received) == list(range(1, THREADS * PER_THREAD + 1))
    for n in range(THREADS):  # each publisher's events arrive in the order it published them
        own = [i for i in received if 1 + n * PER_THREAD <= i <= (n + 1) * PER_THREAD]
        assert own == sorted(own)
