"""edge_bridge/store.py across its writer thread: what committed is announced on the loop.

Kept out of tests/unit (no threads there, STYLE §10); it needs no broker or server.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy.engine import Engine

from edge_bridge.events import EventType, NewEvent
from edge_bridge.store import Announcer, Store, Tx
from tests.factories import RecordingBroadcaster

pytestmark = pytest.mark.integration

WRITES = 50
WAIT_SECONDS = 10


def _checkin(tx: Tx, group: int) -> int:
    tx.emit(NewEvent.for_group(EventType.STUDENT_CHECKIN, group, school_id=1, student_id=1))
    return group


def test_concurrent_writes_are_announced_in_commit_order_before_each_write_returns(
    engine: Engine,
) -> None:
    broadcaster = RecordingBroadcaster()
    store = Store(engine, announcer=Announcer(broadcaster))
    seen_on_return: dict[int, int] = {}

    async def write(group: int) -> None:
        await store.write(lambda tx: _checkin(tx, group))
        # commit, then publish, then answer: this write's event is out before it returns
        seen_on_return[group] = len(broadcaster.events)

    async def scenario() -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            await asyncio.gather(*(write(group) for group in range(WRITES)))

    try:
        asyncio.run(scenario())
    finally:
        store.close()

    ids = [event.id for event in broadcaster.events]
    assert len(ids) == WRITES
    assert ids == sorted(ids)
    for group, published in seen_on_return.items():
        position = [event.active_group_id for event in broadcaster.events].index(group)
        assert position < published


def test_a_write_whose_caller_gave_up_is_still_announced(engine: Engine) -> None:
    broadcaster = RecordingBroadcaster()
    store = Store(engine, announcer=Announcer(broadcaster))
    entered, release = threading.Event(), threading.Event()

    def slow(tx: Tx) -> int:
        entered.set()
        release.wait(WAIT_SECONDS)
        return _checkin(tx, 7)

    async def scenario() -> None:
        caller = asyncio.create_task(store.write(slow))
        assert await asyncio.to_thread(entered.wait, WAIT_SECONDS)  # the writer is in `slow`
        caller.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await caller
        for _ in range(WAIT_SECONDS * 100):  # the announcement runs in a task of its own
            if broadcaster.events:
                break
            await asyncio.sleep(0.01)

    try:
        asyncio.run(scenario())
    finally:
        store.close()

    assert [event.active_group_id for event in broadcaster.events] == [7]
