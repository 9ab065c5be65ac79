"""Tests for edge_bridge/hub.py: routing, cleanup, slow clients, replay, live group changes.

The hub is given a test encoder whose frames are FRAME_BYTES long (or as long as asked), so
byte bounds read as "so many frames".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge_bridge.events import Event, EventType
from edge_bridge.hub import Hub, Subscription
from edge_bridge.tuning import HUB_HISTORY_READS_AT_ONCE

WAIT_SECONDS = 2
FRAME_BYTES = 100
SIZES: dict[int, int] = {}  # event id → frame size, for events that need another size


def encode(event: Event) -> bytes:
    """A frame of FRAME_BYTES (or SIZES[event.id]) bytes that names the event."""
    head = f"{event.id}:{event.type}\n".encode()
    return head.ljust(SIZES.get(event.id, FRAME_BYTES), b".")


def make_hub(**options: Any) -> Hub:
    """A hub with the test encoder."""
    return Hub(encode=encode, **options)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one async scenario on a fresh loop."""
    asyncio.run(scenario())


def make_event(
    id_: int,
    active_group_id: int | None = 1,
    *,
    ogs_group_id: int | None = None,
    type_: EventType = EventType.STUDENT_CHECKIN,
    at: datetime | None = None,
    school_id: int | None = 1,
) -> Event:
    """An event of `school_id` routed to the supervisors of `active_group_id` and leaders of
    `ogs_group_id`."""
    return Event(
        id_,
        type_,
        active_group_id,
        {},
        at or datetime.now(UTC),
        route_active_group_id=active_group_id,
        route_ogs_group_id=ogs_group_id,
        school_id=school_id,
    )


async def next_event(subscription: Subscription) -> Event:
    """The next event, waiting at most WAIT_SECONDS."""
    async with asyncio.timeout(WAIT_SECONDS):
        return await anext(subscription)


async def take(subscription: Subscription, count: int) -> list[int]:
    """The ids of the next `count` events, waiting at most WAIT_SECONDS."""
    async with asyncio.timeout(WAIT_SECONDS):
        return [(await anext(subscription)).id for _ in range(count)]


async def drain(subscription: Subscription) -> list[int]:
    """The ids of every event until the stream ends, waiting at most WAIT_SECONDS."""
    async with asyncio.timeout(WAIT_SECONDS):
        return [event.id async for event in subscription]


class FakeHistory:
    """The event log: returns what `log` holds after the id, or None below `retained_from`."""

    def __init__(self, log: list[Event], *, retained_from: int = 1) -> None:
        self.log = log
        self.retained_from = retained_from
        self.calls = 0
        self.before_read: Callable[[], Awaitable[None]] | None = None

    async def events_after(
        self,
        last_event_id: int,
        *,
        school_id: int,
        active_group_ids: frozenset[int],
        ogs_group_ids: frozenset[int],
        admin: bool = False,
        up_to: int | None = None,
    ) -> list[Event] | None:
        self.calls += 1
        if self.before_read is not None:
            await self.before_read()
        if last_event_id + 1 < self.retained_from:
            return None
        return [
            event
            for event in self.log
            if event.id > last_event_id
            and event.school_id == school_id
            and (up_to is None or event.id <= up_to)
            and (
                event.route_active_group_id in active_group_ids
                or event.route_ogs_group_id in ogs_group_ids
                or (event.route_admin and admin)
            )
        ]


# Routing


def test_event_reaches_only_supervisors_of_its_active_group() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with (
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as in_ten,
            hub.subscribe(school_id=1, staff_id=2, active_group_ids=[20]) as in_twenty,
        ):
            assert await hub.publish(make_event(1, 10)) == 1
            assert await hub.publish(make_event(2, 20)) == 1

            assert await take(in_ten, 1) == [1]
            assert await take(in_twenty, 1) == [2]

    run(scenario)


def test_home_group_leader_receives_checkins_of_their_students_in_any_group() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[], ogs_group_ids=[7]
        ) as leader:
            await hub.publish(make_event(1, 10, ogs_group_id=7))
            await hub.publish(make_event(2, 20, ogs_group_id=8))
            await hub.publish(make_event(3, None, ogs_group_id=7))

            assert await take(leader, 2) == [1, 3]

    run(scenario)


def _admin_event(id_: int, *, school_id: int | None = 1) -> Event:
    return Event(
        id_,
        EventType.DEVICE_STATUS,
        None,
        {},
        datetime.now(UTC),
        route_admin=True,
        school_id=school_id,
    )


def test_the_admins_events_reach_admin_streams_only() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with (
            hub.subscribe(school_id=1, staff_id=4, active_group_ids=[], admin=True) as admin,
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as supervisor,
        ):
            assert await hub.publish(_admin_event(1)) == 1
            await hub.publish(make_event(2, 10))

            assert await take(admin, 1) == [1]
            assert await take(supervisor, 1) == [2]

    run(scenario)


def test_a_reconnecting_admin_replays_the_admins_events_from_the_log() -> None:
    async def scenario() -> None:
        log = [_admin_event(1), make_event(2, 10), _admin_event(3)]
        hub = make_hub(history=FakeHistory(log))
        hub.last_event_id = 3  # as at start: the events are in the log, not in the ring

        async with hub.subscribe(
            school_id=1, staff_id=4, active_group_ids=[], admin=True, last_event_id=0
        ) as admin:
            assert await take(admin, 2) == [1, 3]
        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=0
        ) as other:
            assert await take(other, 1) == [2]

    run(scenario)


def test_subscription_matching_both_active_and_home_group_receives_event_once() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], ogs_group_ids=[7]
        ) as both:
            recipients = await hub.publish(make_event(1, 10, ogs_group_id=7))
            await hub.publish(make_event(2, 10))

            assert recipients == 1
            assert await take(both, 2) == [1, 2]

    run(scenario)


def test_subscription_in_several_groups_receives_each_of_their_events_once() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10, 20, 30]) as sub:
            for event_id, group_id in enumerate([10, 20, 40, 30], start=1):
                await hub.publish(make_event(event_id, group_id))

            assert await take(sub, 3) == [1, 2, 4]

    run(scenario)


def test_publish_counts_every_recipient_once_across_both_indexes() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with (
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]),
            hub.subscribe(school_id=1, staff_id=2, active_group_ids=[10], ogs_group_ids=[7]),
            hub.subscribe(school_id=1, staff_id=3, active_group_ids=[], ogs_group_ids=[7]),
            hub.subscribe(school_id=1, staff_id=4, active_group_ids=[20], ogs_group_ids=[8]),
        ):
            assert await hub.publish(make_event(1, 10, ogs_group_id=7)) == 3

    run(scenario)


def test_publish_without_subscribers_returns_zero_and_logs_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        hub = make_hub()
        with caplog.at_level(logging.DEBUG, logger="edge_bridge.hub"):
            assert await hub.publish(make_event(5, 10)) == 0

    run(scenario)
    messages = [record.getMessage() for record in caplog.records]
    assert "SSE event has no subscribers event_id=5" in messages
    assert any(
        m.startswith("SSE event broadcast active_group_id=10 event_type=student_checkin")
        and "recipient_count=0" in m
        for m in messages
    )


def test_publish_logs_each_broadcast_with_its_recipient_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]):
            with caplog.at_level(logging.DEBUG, logger="edge_bridge.hub"):
                await hub.publish(make_event(1, 10, type_=EventType.ACTIVITY_END))

    run(scenario)
    broadcasts = [r for r in caplog.records if r.getMessage().startswith("SSE event broadcast")]
    assert len(broadcasts) == 1
    assert broadcasts[0].levelno == logging.DEBUG
    assert (
        broadcasts[0]
        .getMessage()
        .startswith(
            "SSE event broadcast active_group_id=10 event_type=activity_end recipient_count=1"
        )
    )


# Subscribe and unsubscribe


def test_leaving_the_context_unregisters_and_stats_return_to_zero() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], ogs_group_ids=[7]
        ) as sub:
            assert hub.stats().total_clients == 1

        stats = hub.stats()
        assert (stats.total_clients, stats.groups, stats.ogs_groups) == (0, {}, {})
        assert sub.closed_reason == "closed"
        assert await hub.publish(make_event(1, 10, ogs_group_id=7)) == 0

    run(scenario)


def test_leaving_the_context_by_an_exception_still_unregisters() -> None:
    async def scenario() -> None:
        hub = make_hub()
        with pytest.raises(ZeroDivisionError):
            async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
                _ = 1 / 0

        assert hub.stats().total_clients == 0
        assert sub.closed_reason == "error"

    run(scenario)


def test_cancelling_the_reader_unregisters_its_subscription() -> None:
    async def scenario() -> None:
        hub = make_hub()
        entered = asyncio.Event()

        async def read_forever() -> None:
            async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
                entered.set()
                async for _ in sub:
                    pass

        reader = asyncio.create_task(read_forever())
        async with asyncio.timeout(WAIT_SECONDS):
            await entered.wait()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(WAIT_SECONDS):
                await reader

        assert hub.stats().total_clients == 0

    run(scenario)


def test_unregister_is_idempotent_and_keeps_the_first_reason() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with (
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub,
            hub.subscribe(school_id=1, staff_id=2, active_group_ids=[10]),
        ):
            sub.close("token_expired")
            sub.close("again")
            assert hub.stats().total_clients == 1

        assert hub.stats().total_clients == 0
        assert sub.closed_reason == "token_expired"

    run(scenario)


def test_subscribe_and_unsubscribe_are_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(
            school_id=1, staff_id=3, active_group_ids=[20, 10], ogs_group_ids=[7]
        ):
            pass

    with caplog.at_level(logging.INFO, logger="edge_bridge.hub"):
        run(scenario)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.INFO,
            "SSE client connected user_id=3 school_id=1 subscribed_groups=[10, 20] ogs_groups=[7]"
            " total_clients=1",
        ),
        (
            logging.INFO,
            "SSE client disconnected user_id=3 school_id=1 reason=closed total_clients=0",
        ),
    ]


def test_stats_count_subscribers_per_active_and_home_group() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with (
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10, 20], ogs_group_ids=[7]),
            hub.subscribe(school_id=1, staff_id=2, active_group_ids=[10]),
        ):
            stats = hub.stats()

            assert stats.total_clients == 2
            assert stats.groups == {10: 2, 20: 1}
            assert stats.ogs_groups == {7: 1}

    run(scenario)


# Slow clients


def test_full_buffer_closes_only_the_slow_subscription_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        hub = make_hub(buffer_bytes=3 * FRAME_BYTES)
        async with (
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as slow,
            hub.subscribe(school_id=1, staff_id=2, active_group_ids=[10]) as reader,
        ):
            for event_id in range(1, 7):
                await hub.publish(make_event(event_id, 10))
                assert await take(reader, 1) == [event_id]

            assert slow.closed_reason == "slow"
            assert reader.closed_reason is None
            assert hub.stats().total_clients == 1
            assert hub.stats().slow_disconnects == 1

    with caplog.at_level(logging.INFO, logger="edge_bridge.hub"):
        run(scenario)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "SSE client closed slow=True reason=buffer_full staff_id=1 school_id=1 buffered=3"
        " buffered_bytes=300 offered_bytes=100 limit_bytes=300"
    ]
    assert (
        "SSE client disconnected user_id=1 school_id=1 reason=slow total_clients=1"
        in caplog.messages
    )


def test_slow_subscription_ends_immediately_without_its_buffered_events() -> None:
    async def scenario() -> None:
        hub = make_hub(buffer_bytes=2 * FRAME_BYTES)
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as slow:
            for event_id in range(1, 4):
                await hub.publish(make_event(event_id, 10))

            assert await drain(slow) == []

    run(scenario)


def test_slow_subscription_wakes_a_waiting_reader_which_then_ends() -> None:
    async def scenario() -> None:
        hub = make_hub(buffer_bytes=1 * FRAME_BYTES)
        got_first = asyncio.Event()

        async def read(sub: Subscription) -> list[int]:
            first = await take(sub, 1)
            got_first.set()
            return first + await drain(sub)  # waits: the buffer is empty now

        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
            reader = asyncio.create_task(read(sub))
            await hub.publish(make_event(1, 10))
            async with asyncio.timeout(WAIT_SECONDS):
                await got_first.wait()
            await hub.publish(make_event(2, 10))
            await hub.publish(make_event(3, 10))  # the reader has not run since: overflow

            async with asyncio.timeout(WAIT_SECONDS):
                assert await reader == [1]
            assert sub.closed_reason == "slow"

    run(scenario)


def test_slow_subscription_in_both_indexes_is_closed_once() -> None:
    async def scenario() -> None:
        hub = make_hub(buffer_bytes=1 * FRAME_BYTES)
        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], ogs_group_ids=[7]
        ) as sub:
            await hub.publish(make_event(1, 10, ogs_group_id=7))
            recipients = await hub.publish(make_event(2, 10, ogs_group_id=7))

            assert recipients == 0
            assert sub.closed_reason == "slow"
            stats = hub.stats()
            assert (stats.slow_disconnects, stats.groups, stats.ogs_groups) == (1, {}, {})

    run(scenario)


def test_publish_does_not_raise_when_logging_fails() -> None:
    class BrokenLogger(logging.Logger):
        def debug(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("log disk full")

    async def scenario() -> None:
        hub = make_hub(logger=BrokenLogger("broken"))
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
            await hub.publish(make_event(1, 10))

            assert await take(sub, 1) == [1]

    run(scenario)


# Replay


def test_reconnect_replays_missed_events_of_its_groups_from_the_ring_then_live() -> None:
    async def scenario() -> None:
        hub = make_hub()
        for event_id, group_id in enumerate([10, 20, 10, 10, 20], start=1):
            await hub.publish(make_event(event_id, group_id))

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=1
        ) as sub:
            await hub.publish(make_event(6, 10))

            assert await take(sub, 3) == [3, 4, 6]
            assert hub.stats().replays == 1

    run(scenario)


def test_reconnect_replays_from_history_when_the_ring_no_longer_covers_it() -> None:
    async def scenario() -> None:
        log = [make_event(event_id, 10) for event_id in range(1, 11)]
        history = FakeHistory(log)
        hub = make_hub(ring_size=3, history=history)
        for event in log:
            await hub.publish(event)

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=4
        ) as sub:
            await hub.publish(make_event(11, 10))

            assert await take(sub, 7) == [5, 6, 7, 8, 9, 10, 11]
            assert history.calls == 1

    run(scenario)


def test_reconnect_after_restart_asks_history_although_the_ring_is_empty() -> None:
    async def scenario() -> None:
        history = FakeHistory([make_event(event_id, 10) for event_id in range(1, 6)])
        hub = make_hub(history=history)
        hub.last_event_id = 5  # as the bridge sets it from the log on start

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=3
        ) as sub:
            await hub.publish(make_event(6, 10))

            assert await take(sub, 3) == [4, 5, 6]

    run(scenario)


@pytest.mark.parametrize("log_has_live_events", [True, False])
def test_events_published_during_the_history_read_arrive_once_without_a_gap(
    log_has_live_events: bool,
) -> None:
    async def scenario() -> None:
        log = [make_event(event_id, 10) for event_id in range(1, 11)]
        history = FakeHistory(log)
        hub = make_hub(ring_size=2, history=history, buffer_bytes=2 * FRAME_BYTES)
        for event in log:
            await hub.publish(event)

        async def publish_while_reading() -> None:
            for event in (make_event(11, 10), make_event(12, 10), make_event(13, 10)):
                if log_has_live_events:
                    log.append(event)  # committed before the read: both replayed and live
                await hub.publish(event)

        history.before_read = publish_while_reading
        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=3
        ) as sub:
            await hub.publish(make_event(14, 10))

            assert await take(sub, 11) == list(range(4, 15))
            assert sub.closed_reason is None

    run(scenario)


def test_live_events_during_a_long_replay_do_not_close_the_client_as_slow() -> None:
    async def scenario() -> None:
        hub = make_hub(buffer_bytes=2 * FRAME_BYTES)
        for event_id in range(1, 21):
            await hub.publish(make_event(event_id, 10))

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=0
        ) as sub:
            await hub.publish(make_event(21, 10))

            assert await take(sub, 21) == list(range(1, 22))
            assert sub.closed_reason is None

    run(scenario)


def test_buffer_after_a_replay_stays_bounded() -> None:
    async def scenario() -> None:
        hub = make_hub(buffer_bytes=2 * FRAME_BYTES)
        for event_id in range(1, 6):
            await hub.publish(make_event(event_id, 10))

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=0
        ) as sub:
            for event_id in range(6, 20):
                await hub.publish(make_event(event_id, 10))

            assert sub.closed_reason == "slow"

    run(scenario)


def test_buffer_size_applies_again_once_the_replay_is_consumed() -> None:
    async def scenario() -> None:
        hub = make_hub(buffer_bytes=2 * FRAME_BYTES)
        for event_id in range(1, 6):
            await hub.publish(make_event(event_id, 10))

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=0
        ) as sub:
            assert await take(sub, 5) == [1, 2, 3, 4, 5]
            for event_id in range(6, 9):
                await hub.publish(make_event(event_id, 10))

            assert sub.closed_reason == "slow"

    run(scenario)


def test_history_without_the_id_yields_one_resync_then_live_events() -> None:
    async def scenario() -> None:
        log = [make_event(event_id, 10) for event_id in range(1, 11)]
        hub = make_hub(ring_size=2, history=FakeHistory(log, retained_from=8))
        for event in log:
            await hub.publish(event)

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=2
        ) as sub:
            await hub.publish(make_event(11, 10))
            resync = await next_event(sub)

            assert (resync.type, resync.id) == (EventType.RESYNC, 10)
            assert await take(sub, 1) == [11]
            assert hub.stats().resyncs == 1

    run(scenario)


def test_uncovered_id_without_history_yields_resync() -> None:
    async def scenario() -> None:
        hub = make_hub(ring_size=2)
        for event_id in range(1, 6):
            await hub.publish(make_event(event_id, 10))

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=1
        ) as sub:
            resync = await next_event(sub)

            assert (resync.type, resync.id) == (EventType.RESYNC, 5)

    run(scenario)


@pytest.mark.parametrize("ring_size", [2, 4096])
def test_last_event_id_beyond_the_newest_id_gets_one_resync_then_live_events(
    ring_size: int,
) -> None:
    async def scenario() -> None:
        hub = make_hub(ring_size=ring_size, history=FakeHistory([]))
        for event_id in range(1, 6):
            await hub.publish(make_event(event_id, 10))

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=99
        ) as sub:
            await hub.publish(make_event(6, 10))
            resync = await next_event(sub)

            assert (resync.type, resync.id) == (EventType.RESYNC, 5)
            assert await take(sub, 1) == [6]
            assert hub.stats().resyncs == 1

    run(scenario)


def test_history_failure_propagates_and_unregisters() -> None:
    class FailingHistory(FakeHistory):
        async def events_after(self, *args: Any, **kwargs: Any) -> list[Event] | None:
            raise ConnectionError("database unreachable")

    async def scenario() -> None:
        hub = make_hub(history=FailingHistory([]))
        hub.last_event_id = 5
        with pytest.raises(ConnectionError):
            async with hub.subscribe(
                school_id=1, staff_id=1, active_group_ids=[10], last_event_id=3
            ):
                pass

        assert hub.stats().total_clients == 0

    run(scenario)


# Group changes


def test_update_staff_moves_every_open_subscription_of_that_staff_member() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with (
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as tab_one,
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as tab_two,
            hub.subscribe(school_id=1, staff_id=2, active_group_ids=[10]) as colleague,
        ):
            hub.update_staff(1, active_group_ids=[20], ogs_group_ids=[7])
            await hub.publish(make_event(1, 10))
            await hub.publish(make_event(2, 20))
            await hub.publish(make_event(3, None, ogs_group_id=7))

            assert await take(tab_one, 2) == [2, 3]
            assert await take(tab_two, 2) == [2, 3]
            assert await take(colleague, 1) == [1]
            assert tab_one.active_group_ids == frozenset({20})
            assert tab_one.ogs_group_ids == frozenset({7})

    run(scenario)


def test_set_groups_updates_indexes_and_drops_empty_groups() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], ogs_group_ids=[7]
        ) as sub:
            sub.set_groups([20, 30], [])

            assert hub.stats().groups == {20: 1, 30: 1}
            assert hub.stats().ogs_groups == {}
            assert await hub.publish(make_event(1, 10, ogs_group_id=7)) == 0
            assert await hub.publish(make_event(2, 30)) == 1

        assert hub.stats().groups == {}

    run(scenario)


def test_update_staff_without_open_subscriptions_does_nothing() -> None:
    async def scenario() -> None:
        hub = make_hub()
        hub.update_staff(9, active_group_ids=[10], ogs_group_ids=[])

        assert hub.stats().groups == {}

    run(scenario)


# Shutdown


def test_close_all_ends_every_subscription_promptly() -> None:
    async def scenario() -> None:
        hub = make_hub()
        ready = asyncio.Barrier(4)

        async def read(staff_id: int) -> str | None:
            async with hub.subscribe(school_id=1, staff_id=staff_id, active_group_ids=[10]) as sub:
                await ready.wait()
                async for _ in sub:
                    pass
                return sub.closed_reason

        readers = [asyncio.create_task(read(staff_id)) for staff_id in (1, 2, 3)]
        async with asyncio.timeout(WAIT_SECONDS):
            await ready.wait()
            assert hub.close_all("shutdown") == 3
            reasons = await asyncio.gather(*readers)

        assert reasons == ["shutdown"] * 3
        assert hub.stats().total_clients == 0

    run(scenario)


def test_a_new_subscription_resumes_after_the_last_event_published_before_it() -> None:
    async def scenario() -> None:
        hub = make_hub()
        await hub.publish(make_event(7, 10))
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
            await hub.publish(make_event(8, 10))

            assert sub.start_after_id == 7
            assert await take(sub, 1) == [8]

    run(scenario)


def test_a_replaying_subscription_resumes_after_the_id_it_asked_for() -> None:
    async def scenario() -> None:
        hub = make_hub()
        for event_id in (1, 2, 3):
            await hub.publish(make_event(event_id, 10))
        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=1
        ) as sub:
            assert sub.start_after_id == 1
            assert await take(sub, 2) == [2, 3]

    run(scenario)


@pytest.mark.parametrize(
    "option", ["buffer_bytes", "replay_limit", "max_streams_per_staff", "max_streams"]
)
def test_hub_rejects_a_limit_below_one(option: str) -> None:
    with pytest.raises(ValueError, match=f"{option} must be at least 1, got: 0"):
        make_hub(**{option: 0})


# Byte accounting (slow means: the client stopped taking bytes)


def test_a_burst_of_many_small_events_in_one_turn_does_not_close_a_reading_stream() -> None:
    async def scenario() -> None:
        hub = make_hub(buffer_bytes=1_048_576)
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
            for event_id in range(1, 1501):  # one commit's worth, before the reader runs
                await hub.publish(make_event(event_id, 10))

            assert await take(sub, 1500) == list(range(1, 1501))
            assert sub.closed_reason is None
            assert hub.stats().slow_disconnects == 0

    run(scenario)


def test_the_bound_counts_bytes_so_one_large_frame_overflows_where_small_ones_fit(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SIZES, 9, 250)

    async def scenario() -> None:
        hub = make_hub(buffer_bytes=1000)
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
            for event_id in range(1, 9):
                await hub.publish(make_event(event_id, 10))  # 800 bytes held
            held = sub.buffered_bytes
            await hub.publish(make_event(9, 10))  # 250 more: over 1000

            assert held == 800
            assert sub.closed_reason == "slow"

    with caplog.at_level(logging.WARNING, logger="edge_bridge.hub"):
        run(scenario)
    assert caplog.messages == [
        "SSE client closed slow=True reason=buffer_full staff_id=1 school_id=1 buffered=8"
        " buffered_bytes=800 offered_bytes=250 limit_bytes=1000"
    ]


def test_bytes_taken_by_the_stream_make_room_for_more() -> None:
    async def scenario() -> None:
        hub = make_hub(buffer_bytes=3 * FRAME_BYTES)
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
            for event_id in range(1, 31):
                await hub.publish(make_event(event_id, 10))
                if event_id % 3 == 0:
                    assert len(await sub.read(10 * FRAME_BYTES)) == 3 * FRAME_BYTES

            assert sub.closed_reason is None
            assert sub.buffered_bytes == 0

    run(scenario)


def test_every_stream_shares_one_encoded_frame_per_event() -> None:
    calls: list[int] = []

    def counting_encode(event: Event) -> bytes:
        calls.append(event.id)
        return encode(event)

    async def scenario() -> None:
        hub = Hub(encode=counting_encode)
        async with (
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as one,
            hub.subscribe(school_id=1, staff_id=2, active_group_ids=[10], ogs_group_ids=[7]) as two,
        ):
            await hub.publish(make_event(1, 10, ogs_group_id=7))

            first, second = await one.read(FRAME_BYTES), await two.read(FRAME_BYTES)

            assert first is second
            assert first == encode(make_event(1, 10))
            assert calls == [1]

    run(scenario)


def test_read_joins_the_buffered_frames_up_to_max_bytes_and_returns_empty_once_closed() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
            for event_id in range(1, 6):
                await hub.publish(make_event(event_id, 10))

            async with asyncio.timeout(WAIT_SECONDS):
                two = await sub.read(2 * FRAME_BYTES + 50)
                rest = await sub.read(10 * FRAME_BYTES)
                sub.close("shutdown")
                after_close = await sub.read(10 * FRAME_BYTES)

            assert two == encode(make_event(1)) + encode(make_event(2))
            assert rest.count(b"student_checkin") == 3
            assert after_close == b""

    run(scenario)


def test_a_frame_larger_than_max_bytes_is_still_read_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(SIZES, 1, 5000)

    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
            await hub.publish(make_event(1, 10))
            await hub.publish(make_event(2, 10))

            async with asyncio.timeout(WAIT_SECONDS):
                first = await sub.read(1000)

            assert len(first) == 5000

    run(scenario)


# Retention by age at replay time


def test_an_id_whose_next_event_is_older_than_the_retention_gets_resync_from_the_ring() -> None:
    now = datetime.now(UTC)

    async def scenario() -> None:
        hub = make_hub(retention_seconds=2, clock=lambda: now)
        for event_id in (1, 2, 3):
            await hub.publish(make_event(event_id, 10, at=now - timedelta(seconds=3)))
        for event_id in (4, 5):
            await hub.publish(make_event(event_id, 10, at=now))

        async with (
            hub.subscribe(
                school_id=1, staff_id=1, active_group_ids=[10], last_event_id=1
            ) as too_old,
            hub.subscribe(
                school_id=1, staff_id=2, active_group_ids=[10], last_event_id=3
            ) as recent,
        ):
            resync = await next_event(too_old)

            assert (resync.type, resync.id) == (EventType.RESYNC, 5)
            assert await take(recent, 2) == [4, 5]
            assert hub.stats().resyncs == 1

    run(scenario)


# Limits


def test_a_stream_beyond_the_per_staff_limit_closes_that_staff_members_oldest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        hub = make_hub(max_streams_per_staff=2)
        async with (
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as oldest,
            hub.subscribe(school_id=1, staff_id=2, active_group_ids=[10]) as colleague,
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as second,
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as newest,
        ):
            await hub.publish(make_event(1, 10))

            assert await drain(oldest) == []
            assert oldest.closed_reason == "too_many_streams"
            assert [await take(s, 1) for s in (colleague, second, newest)] == [[1], [1], [1]]
            assert hub.stats().total_clients == 3

    with caplog.at_level(logging.WARNING, logger="edge_bridge.hub"):
        run(scenario)
    assert caplog.messages == [
        "SSE client closed reason=too_many_streams user_id=1 open_streams=2 limit=2"
    ]


def test_the_hub_is_full_at_max_streams_and_has_room_again_when_one_closes() -> None:
    async def scenario() -> None:
        hub = make_hub(max_streams=2)
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]):
            async with hub.subscribe(school_id=1, staff_id=2, active_group_ids=[10]):
                full = hub.is_full()
            after_one_closed = hub.is_full()

        assert (full, after_one_closed) == (True, False)

    run(scenario)


@pytest.mark.parametrize(("missed", "resyncs"), [(3, 0), (4, 1)])
def test_a_replay_from_the_ring_beyond_the_replay_limit_is_one_resync(
    missed: int, resyncs: int
) -> None:
    async def scenario() -> None:
        hub = make_hub(replay_limit=3)
        for event_id in range(1, missed + 1):
            await hub.publish(make_event(event_id, 10))

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=0
        ) as sub:
            first = await next_event(sub)

            assert first.type == (EventType.RESYNC if resyncs else EventType.STUDENT_CHECKIN)
            assert hub.stats().resyncs == resyncs

    run(scenario)


def test_a_reconnect_storm_reads_the_history_a_few_at_a_time_and_every_client_replays() -> None:
    async def scenario() -> None:
        log = [make_event(event_id, 10) for event_id in range(1, 11)]
        history = FakeHistory(log)
        hub = make_hub(ring_size=2, history=history)
        for event in log:
            await hub.publish(event)
        reading, most_at_once = 0, 0
        release, all_busy = asyncio.Event(), asyncio.Event()

        async def slow_read() -> None:
            nonlocal reading, most_at_once
            reading += 1
            most_at_once = max(most_at_once, reading)
            if reading == HUB_HISTORY_READS_AT_ONCE:
                all_busy.set()
            await release.wait()
            reading -= 1

        history.before_read = slow_read

        async def reconnect(staff_id: int) -> list[int]:
            async with hub.subscribe(
                school_id=1, staff_id=staff_id, active_group_ids=[10], last_event_id=4
            ) as sub:
                return await take(sub, 6)

        clients = [asyncio.create_task(reconnect(staff_id)) for staff_id in range(1, 51)]
        async with asyncio.timeout(WAIT_SECONDS):
            await all_busy.wait()
            for _ in range(10):  # let any read that could start, start
                await asyncio.sleep(0)
            waiting = history.calls
            release.set()
            replayed = await asyncio.gather(*clients)

        assert waiting == HUB_HISTORY_READS_AT_ONCE
        assert most_at_once == HUB_HISTORY_READS_AT_ONCE
        assert history.calls == 50
        assert replayed == [[5, 6, 7, 8, 9, 10]] * 50

    run(scenario)


# One feed, possibly a moment behind another instance (PostgreSQL's event-log tail)


def test_an_event_at_or_below_the_newest_id_is_ignored_not_delivered_twice() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
            await hub.publish(make_event(1, 10))
            await hub.publish(make_event(2, 10))

            repeated = await hub.publish(make_event(2, 10))
            older = await hub.publish(make_event(1, 10))
            await hub.publish(make_event(3, 10))

            assert (repeated, older) == (0, 0)
            assert await take(sub, 3) == [1, 2, 3]
            assert hub.stats().events_published == 3

    run(scenario)


def test_advance_moves_the_position_past_ids_routed_to_no_stream() -> None:
    async def scenario() -> None:
        hub = make_hub(history=FakeHistory([]))
        await hub.publish(make_event(1, 10))

        hub.advance(4)  # 2..4: internal rows the tail read
        hub.advance(3)  # never backwards
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10]) as sub:
            await hub.publish(make_event(5, 10))

            assert hub.last_event_id == 5
            assert sub.start_after_id == 4
            assert await take(sub, 1) == [5]

    run(scenario)


def test_a_last_event_id_just_ahead_of_the_feed_waits_for_it_and_gets_no_repeats() -> None:
    async def scenario() -> None:
        history = FakeHistory([])
        hub = make_hub(history=history, catch_up_wait_seconds=WAIT_SECONDS)
        await hub.publish(make_event(1, 10))

        async def feed() -> None:  # runs once the subscription waits for the feed
            for event_id in (2, 3, 4):
                await hub.publish(make_event(event_id, 10))

        # The client saw 2 and 3 on another instance; this one's feed has only 1 so far.
        feeder = asyncio.create_task(feed())
        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=3
        ) as sub:
            assert await take(sub, 1) == [4]
            assert hub.stats().resyncs == 0
        await feeder

    run(scenario)


def test_a_last_event_id_the_feed_never_reaches_gets_a_resync_after_the_wait() -> None:
    async def scenario() -> None:
        hub = make_hub(history=FakeHistory([]), catch_up_wait_seconds=0.05)
        await hub.publish(make_event(1, 10))

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=99
        ) as sub:
            resync = await next_event(sub)

            assert (resync.type, resync.id) == (EventType.RESYNC, 1)

    run(scenario)


def test_a_history_replay_stops_at_the_hubs_position_and_newer_events_come_live_once() -> None:
    async def scenario() -> None:
        # The log already holds 6, which this hub's feed has not handed over yet.
        log = [make_event(event_id, 10) for event_id in range(1, 7)]
        history = FakeHistory(log)
        hub = make_hub(ring_size=1, history=history)
        for event in log[:5]:
            await hub.publish(event)

        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], last_event_id=2
        ) as sub:
            await hub.publish(log[5])

            assert await take(sub, 4) == [3, 4, 5, 6]
            await hub.publish(make_event(7, 10))
            assert await take(sub, 1) == [7]

    run(scenario)


def test_a_read_with_a_deadline_returns_none_once_it_passed_with_nothing_buffered() -> None:
    async def scenario() -> None:
        hub = make_hub()
        loop = asyncio.get_running_loop()
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[1]) as sub:
            until = loop.time() + 0.02

            timed_out = await asyncio.wait_for(sub.read(65_536, until=until), 2)
            await hub.publish(make_event(1))
            frames = await asyncio.wait_for(sub.read(65_536, until=until), 2)

            assert timed_out is None
            assert loop.time() >= until - 0.01
            assert frames == encode(make_event(1))

    run(scenario)


def test_reads_waiting_for_the_same_deadline_arm_one_timer() -> None:
    async def scenario() -> None:
        hub = make_hub()
        loop = asyncio.get_running_loop()
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[1]) as sub:
            until = loop.time() + 60

            def armed() -> int:
                return sum(not h.cancelled() for h in loop._scheduled)  # type: ignore[attr-defined]

            timers = armed()
            for id_ in (1, 2, 3):
                reading = asyncio.ensure_future(sub.read(65_536, until=until))
                await asyncio.sleep(0)
                await hub.publish(make_event(id_))
                await asyncio.wait_for(reading, 2)
            after = armed()

            assert after == timers + 1

    run(scenario)


# Schools: the school is part of every subscription key


def test_an_event_of_another_school_never_reaches_a_stream_whose_groups_match_its_route_ids() -> (
    None
):
    async def scenario() -> None:
        hub = make_hub()
        async with (
            hub.subscribe(
                school_id=1, staff_id=1, active_group_ids=[10], ogs_group_ids=[7], admin=True
            ) as school_one,
            hub.subscribe(school_id=2, staff_id=2, active_group_ids=[10], ogs_group_ids=[7]) as two,
        ):
            reached = await hub.publish(make_event(1, 10, ogs_group_id=7, school_id=2))
            await hub.publish(make_event(2, None, ogs_group_id=7, school_id=2))
            await hub.publish(make_event(3, 10, school_id=1))

            assert reached == 1
            assert await take(two, 2) == [1, 2]
            assert await take(school_one, 1) == [3]  # its own school's next event, no other

    run(scenario)


def test_a_stream_that_changes_groups_stays_in_its_school() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(school_id=2, staff_id=2, active_group_ids=[20]) as sub:
            hub.update_staff(2, active_group_ids=[30], ogs_group_ids=[8])
            not_its_school = await hub.publish(make_event(1, 30, ogs_group_id=8, school_id=1))
            await hub.publish(make_event(2, 30, school_id=2))

            assert not_its_school == 0
            assert await take(sub, 1) == [2]
            assert hub.stats(school_id=2).groups == {30: 1}
            assert hub.stats(school_id=1).groups == {}

    run(scenario)


def test_a_ring_replay_holds_only_the_streams_own_school() -> None:
    async def scenario() -> None:
        hub = make_hub()
        for event_id, school_id in enumerate([2, 1, 2, 2, 1], start=1):
            await hub.publish(make_event(event_id, 10, ogs_group_id=7, school_id=school_id))
        await hub.publish(_admin_event(6, school_id=2))

        async with hub.subscribe(
            school_id=1,
            staff_id=1,
            active_group_ids=[10],
            ogs_group_ids=[7],
            admin=True,
            last_event_id=0,
        ) as sub:
            await hub.publish(make_event(7, 10, school_id=1))

            assert await take(sub, 3) == [2, 5, 7]
            assert hub.stats().resyncs == 0

    run(scenario)


def test_a_log_replay_asks_for_the_streams_school_and_drops_any_other_schools_event() -> None:
    class CarelessHistory(FakeHistory):
        """Answers with every event after the id, whatever school it was asked for."""

        def __init__(self, log: list[Event]) -> None:
            super().__init__(log)
            self.schools: list[int] = []

        async def events_after(
            self, last_event_id: int, *, school_id: int, **_routes: Any
        ) -> list[Event] | None:
            self.schools.append(school_id)
            return [event for event in self.log if event.id > last_event_id]

    async def scenario() -> None:
        log = [
            make_event(1, 10, school_id=1),
            make_event(2, 10, school_id=2),
            _admin_event(3, school_id=1),
            make_event(4, None, ogs_group_id=7, school_id=1),
            make_event(5, 10, school_id=2),
        ]
        history = CarelessHistory(log)
        hub = make_hub(history=history)
        hub.last_event_id = 5  # as at start: the events are in the log, not in the ring

        async with hub.subscribe(
            school_id=2,
            staff_id=2,
            active_group_ids=[10],
            ogs_group_ids=[7],
            admin=True,
            last_event_id=0,
        ) as sub:
            await hub.publish(make_event(6, 10, school_id=2))

            assert await take(sub, 3) == [2, 5, 6]
            assert history.schools == [2]

    run(scenario)


def test_an_admin_gets_the_admins_events_of_their_own_school_only() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with (
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[], admin=True) as admin_one,
            hub.subscribe(school_id=2, staff_id=2, active_group_ids=[], admin=True) as admin_two,
        ):
            status_two = await hub.publish(_admin_event(1, school_id=2))
            occupancy = Event(
                2,
                EventType.OCCUPANCY,
                None,
                {},
                datetime.now(UTC),
                route_admin=True,
                school_id=2,
            )
            occupancy_two = await hub.publish(occupancy)
            await hub.publish(_admin_event(3, school_id=1))

            assert (status_two, occupancy_two) == (1, 1)
            assert await take(admin_two, 2) == [1, 2]
            assert await take(admin_one, 1) == [3]

    run(scenario)


def test_an_event_without_a_school_reaches_no_stream_live_or_replayed() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with hub.subscribe(
            school_id=1, staff_id=1, active_group_ids=[10], ogs_group_ids=[7], admin=True
        ) as live:
            reached = [
                await hub.publish(make_event(1, 10, ogs_group_id=7, school_id=None)),
                await hub.publish(_admin_event(2, school_id=None)),
            ]
            await hub.publish(make_event(3, 10))
            assert reached == [0, 0]
            assert await take(live, 1) == [3]

        async with hub.subscribe(
            school_id=1,
            staff_id=1,
            active_group_ids=[10],
            ogs_group_ids=[7],
            admin=True,
            last_event_id=0,
        ) as replayed:
            await hub.publish(make_event(4, 10))
            assert await take(replayed, 2) == [3, 4]

    run(scenario)


def test_stats_count_streams_per_school_and_one_schools_view_counts_only_that_school() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with (
            hub.subscribe(school_id=1, staff_id=1, active_group_ids=[10], ogs_group_ids=[7]),
            hub.subscribe(school_id=1, staff_id=3, active_group_ids=[10]),
            hub.subscribe(school_id=2, staff_id=2, active_group_ids=[10, 20], ogs_group_ids=[8]),
        ):
            whole, one, two = hub.stats(), hub.stats(school_id=1), hub.stats(school_id=2)
            async with hub.subscribe(school_id=3, staff_id=4, active_group_ids=[]):
                with_three = hub.stats().schools
        after = hub.stats()

        assert (whole.total_clients, whole.schools) == (3, {1: 2, 2: 1})
        assert (whole.groups, whole.ogs_groups) == ({10: 3, 20: 1}, {7: 1, 8: 1})
        assert (one.total_clients, one.groups, one.ogs_groups) == (2, {10: 2}, {7: 1})
        assert one.schools == {1: 2}
        assert (two.total_clients, two.groups, two.ogs_groups) == (1, {10: 1, 20: 1}, {8: 1})
        assert with_three == {1: 2, 2: 1, 3: 1}
        assert (after.total_clients, after.schools, after.groups) == (0, {}, {})
        assert hub.stats(school_id=5).total_clients == 0

    run(scenario)
