"""In-process pub/sub for realtime events: publish, subscribe with replay, live group changes.

The hub knows nothing of HTTP, SSE or JSON (STYLE §6); `api/sse.py` turns a `Subscription`
into a stream. Everything here runs on one event loop; other threads hand events over with
`publish_threadsafe`.

Built to hold 10,000 subscriptions cheaply: each is a bounded deque plus a future that exists
only while its reader waits, so publishing is one loop over the indexed recipients with no task,
queue or lock per event. A full buffer closes that subscription instead of dropping events: the
browser reconnects with `Last-Event-ID` and replays what it missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Protocol

from edge_bridge.events import Event, EventType

logger = logging.getLogger(__name__)

_GroupIndex = dict[int, set["Subscription"]]


class EventHistory(Protocol):
    """The event log, as far as replay needs it (implemented by the database event log)."""

    async def events_after(
        self,
        last_event_id: int,
        *,
        active_group_ids: frozenset[int],
        ogs_group_ids: frozenset[int],
    ) -> list[Event] | None:
        """Events with id > last_event_id routed to those groups, in id order.

        None if last_event_id is older than what is retained (the client must resync).
        """
        ...


@dataclass(frozen=True, slots=True)
class HubStats:
    """Counts for `GET /api/sse/stats` and metrics; groups map a group id to its subscribers."""

    total_clients: int
    groups: dict[int, int]
    ogs_groups: dict[int, int]
    events_published: int
    replays: int
    resyncs: int
    slow_disconnects: int


def routes_to(event: Event, sub: Subscription) -> bool:
    """Whether `event` belongs on `sub`'s stream (CONTRACT §5 routing)."""
    return (
        event.route_active_group_id in sub.active_group_ids
        or event.route_ogs_group_id in sub.ogs_group_ids
    )


class Subscription:
    """One client's stream: an async iterator of events that ends as soon as it is closed."""

    __slots__ = (
        "_buffer",
        "_capacity",
        "_hub",
        "_waiter",
        "active_group_ids",
        "closed_reason",
        "ogs_group_ids",
        "staff_id",
        "start_after_id",
    )

    def __init__(
        self,
        hub: Hub,
        *,
        staff_id: int,
        active_group_ids: frozenset[int],
        ogs_group_ids: frozenset[int],
    ) -> None:
        self._hub = hub
        self.staff_id = staff_id
        self.active_group_ids = active_group_ids
        self.ogs_group_ids = ogs_group_ids
        self.closed_reason: str | None = None
        # Events with larger ids follow on this stream: the id a client that has seen
        # nothing else resumes from (set when it registers, or the replay's starting point).
        self.start_after_id = 0
        self._buffer: deque[Event] = deque()
        self._capacity = hub.buffer_size
        self._waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return (
            f"Subscription(staff_id={self.staff_id}, active={sorted(self.active_group_ids)}, "
            f"ogs={sorted(self.ogs_group_ids)}, buffered={len(self._buffer)}, "
            f"closed_reason={self.closed_reason!r})"
        )

    def set_groups(self, active_group_ids: Iterable[int], ogs_group_ids: Iterable[int]) -> None:
        """Follow a supervision change: events published from now on use the new groups."""
        self._hub._move(self, frozenset(active_group_ids), frozenset(ogs_group_ids))

    def close(self, reason: str) -> None:
        """End the stream now (buffered events are dropped) and leave the hub; idempotent."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self._buffer.clear()
        self._wake()
        self._hub._unregister(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        buffer_size = self._hub.buffer_size
        while self.closed_reason is None:
            if self._buffer:
                event = self._buffer.popleft()
                if self._capacity > buffer_size and len(self._buffer) < buffer_size:
                    self._capacity = buffer_size  # caught up after a replay
                return event
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        raise StopAsyncIteration

    def drain_nowait(self, limit: int = 256) -> list[Event]:
        """Events already buffered (at most `limit`), without waiting: after `__anext__`
        returned one, the stream sends these with it in one write instead of one each."""
        taken: list[Event] = []
        buffer = self._buffer
        while buffer and len(taken) < limit and self.closed_reason is None:
            taken.append(buffer.popleft())
        if self._capacity > self._hub.buffer_size and len(buffer) < self._hub.buffer_size:
            self._capacity = self._hub.buffer_size
        return taken

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _start_with(self, missed: list[Event], *, seen_up_to: int | None) -> None:
        """Put `missed` in front of what was buffered live, dropping live events already seen."""
        if self.closed_reason is not None:
            return
        live = (event for event in self._buffer if seen_up_to is None or event.id > seen_up_to)
        self._buffer = deque(chain(missed, live))
        # The backlog may exceed buffer_size; allow buffer_size more until the client catches up.
        self._capacity = len(self._buffer) + self._hub.buffer_size


class Hub:
    """Routes each published event to the subscriptions of its active group and home group."""

    def __init__(
        self,
        *,
        buffer_size: int = 64,
        history: EventHistory | None = None,
        ring_size: int = 4096,
        logger: logging.Logger | None = None,
    ) -> None:
        if buffer_size < 1:
            msg = f"buffer_size must be at least 1, got: {buffer_size}"
            raise ValueError(msg)
        self.buffer_size = buffer_size
        self.last_event_id = 0
        self._history = history
        self._ring_size = ring_size
        self._ring: deque[Event] = deque(maxlen=ring_size)
        self._logger = logger or logging.getLogger(__name__)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: set[Subscription] = set()
        self._by_staff: dict[int, set[Subscription]] = {}
        self._active_index: _GroupIndex = {}
        self._ogs_index: _GroupIndex = {}
        self._events_published = 0
        self._replays = 0
        self._resyncs = 0
        self._slow_disconnects = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Name the loop that `publish_threadsafe` hands events to."""
        self._loop = loop

    async def start(self) -> None:
        """Bind the hub to the running loop (call from the lifespan)."""
        self.bind(asyncio.get_running_loop())

    async def publish(self, event: Event) -> int:
        """Deliver `event` to its subscribers and return how many; never waits, never raises."""
        return self._deliver(event)

    def publish_threadsafe(self, event: Event) -> None:
        """Hand `event` to the hub's loop; for other threads (the MQTT network thread)."""
        self._call_soon(lambda: self._deliver(event), f"event_id={event.id}")

    def update_staff_threadsafe(
        self,
        staff_id: int,
        *,
        active_group_ids: Iterable[int],
        ogs_group_ids: Iterable[int],
        keep_current: bool = False,
    ) -> None:
        """`update_staff` from another thread (the database writer), in call order."""
        self._call_soon(
            lambda: self.update_staff(
                staff_id,
                active_group_ids=active_group_ids,
                ogs_group_ids=ogs_group_ids,
                keep_current=keep_current,
            ),
            f"staff_id={staff_id}",
        )

    def _call_soon(self, callback: Callable[[], object], context: str) -> None:
        """Run `callback` on the hub's loop, in call order, from any thread."""
        if self._loop is None:
            msg = "hub is not bound to an event loop: call bind(loop) or await start() first"
            raise RuntimeError(msg)
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: the process is shutting down
            self._logger.warning("SSE hand-over dropped reason=loop_closed %s", context)

    def subscribe(
        self,
        *,
        staff_id: int,
        active_group_ids: Iterable[int],
        ogs_group_ids: Iterable[int] = (),
        last_event_id: int | None = None,
    ) -> AbstractAsyncContextManager[Subscription]:
        """Open a stream: missed events after `last_event_id` first (or one resync), then live."""
        sub = Subscription(
            self,
            staff_id=staff_id,
            active_group_ids=frozenset(active_group_ids),
            ogs_group_ids=frozenset(ogs_group_ids),
        )
        return self._open(sub, last_event_id)

    def update_staff(
        self,
        staff_id: int,
        *,
        active_group_ids: Iterable[int],
        ogs_group_ids: Iterable[int],
        keep_current: bool = False,
    ) -> None:
        """Move every open subscription of that staff member to these groups.

        `keep_current` only adds groups. The store calls it before publishing a change's
        events and the exact update after them, so whoever starts an activity gets its
        `activity_start` and whoever ends one still gets its `activity_end`.
        """
        active, ogs = frozenset(active_group_ids), frozenset(ogs_group_ids)
        for sub in list(self._by_staff.get(staff_id, ())):
            if keep_current:
                self._move(sub, active | sub.active_group_ids, ogs | sub.ogs_group_ids)
            else:
                self._move(sub, active, ogs)

    def staff_ids(self) -> frozenset[int]:
        """The staff members with at least one open stream."""
        return frozenset(self._by_staff)

    def close_all(self, reason: str = "shutdown") -> int:
        """End every open stream (for shutdown) and return how many there were."""
        subs = list(self._subscriptions)
        for sub in subs:
            sub.close(reason)
        self._logger.info("SSE hub closed all clients reason=%s count=%d", reason, len(subs))
        return len(subs)

    def stats(self) -> HubStats:
        """Current subscriber counts and lifetime counters."""
        return HubStats(
            total_clients=len(self._subscriptions),
            groups={group_id: len(subs) for group_id, subs in self._active_index.items()},
            ogs_groups={group_id: len(subs) for group_id, subs in self._ogs_index.items()},
            events_published=self._events_published,
            replays=self._replays,
            resyncs=self._resyncs,
            slow_disconnects=self._slow_disconnects,
        )

    @asynccontextmanager
    async def _open(
        self, sub: Subscription, last_event_id: int | None
    ) -> AsyncIterator[Subscription]:
        # Register first so live events buffer while the missed ones are looked up.
        self._register(sub)
        if last_event_id is not None:
            sub.start_after_id = last_event_id
        reason = "closed"
        try:
            if last_event_id is not None:
                await self._catch_up(sub, last_event_id)
            yield sub
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except Exception:
            reason = "error"
            raise
        finally:
            sub.close(reason)

    def _deliver(self, event: Event) -> int:
        try:
            return self._broadcast(event)
        except Exception:
            self._logger.exception("SSE event broadcast failed event_id=%d", event.id)
            return 0

    def _broadcast(self, event: Event) -> int:
        self.last_event_id = max(self.last_event_id, event.id)
        self._ring.append(event)
        self._events_published += 1
        overflowed: list[Subscription] = []
        active_id, ogs_id = event.route_active_group_id, event.route_ogs_group_id
        recipients = 0
        if active_id is not None:
            recipients += _offer(self._active_index.get(active_id, ()), event, overflowed)
        if ogs_id is not None:
            recipients += _offer(
                self._ogs_index.get(ogs_id, ()), event, overflowed, skip_active_id=active_id
            )
        for sub in overflowed:
            self._close_slow(sub)
        self._logger.debug(
            "SSE event broadcast active_group_id=%s event_type=%s recipient_count=%d"
            " event_id=%d ogs_group_id=%s",
            event.active_group_id,
            event.type,
            recipients,
            event.id,
            ogs_id,
        )
        if not recipients:
            self._logger.debug("SSE event has no subscribers event_id=%d", event.id)
        return recipients

    def _close_slow(self, sub: Subscription) -> None:
        self._slow_disconnects += 1
        self._logger.warning(
            "SSE client closed slow=True staff_id=%d buffered=%d",
            sub.staff_id,
            len(sub._buffer),
        )
        sub.close("slow")

    async def _catch_up(self, sub: Subscription, last_event_id: int) -> None:
        if self._ring_covers(last_event_id):
            missed = [e for e in self._ring if e.id > last_event_id and routes_to(e, sub)]
            source = "ring"
        else:
            missed = await self._read_history(sub, last_event_id)
            source = "history"
        if missed is None:  # too old: one resync frame stands for everything up to now
            self._resyncs += 1
            missed = [Event.stream_local(EventType.RESYNC, id_=self.last_event_id)]
            source = "resync"
        else:
            self._replays += 1
        sub._start_with(missed, seen_up_to=missed[-1].id if missed else None)
        self._logger.info(
            "SSE client replay user_id=%d last_event_id=%d source=%s replayed=%d",
            sub.staff_id,
            last_event_id,
            source,
            len(missed),
        )

    def _ring_covers(self, last_event_id: int) -> bool:
        if self._ring:
            return self._ring[0].id <= last_event_id + 1
        # Nothing published since start: only the log knows what came before, if there is one.
        return self._history is None and last_event_id >= self.last_event_id

    async def _read_history(self, sub: Subscription, last_event_id: int) -> list[Event] | None:
        if self._history is None:
            return None
        # Live events keep arriving during the read; let as many buffer as the ring holds.
        sub._capacity = self.buffer_size + self._ring_size
        try:
            missed = await self._history.events_after(
                last_event_id,
                active_group_ids=sub.active_group_ids,
                ogs_group_ids=sub.ogs_group_ids,
            )
        finally:
            sub._capacity = self.buffer_size
        return None if missed is None else sorted(missed, key=lambda event: event.id)

    def _register(self, sub: Subscription) -> None:
        # Every event with a larger id is published after this point and reaches `sub`.
        sub.start_after_id = self.last_event_id
        self._subscriptions.add(sub)
        self._by_staff.setdefault(sub.staff_id, set()).add(sub)
        _index(self._active_index, sub, (), sub.active_group_ids)
        _index(self._ogs_index, sub, (), sub.ogs_group_ids)
        self._logger.info(
            "SSE client connected user_id=%d subscribed_groups=%s ogs_groups=%s total_clients=%d",
            sub.staff_id,
            sorted(sub.active_group_ids),
            sorted(sub.ogs_group_ids),
            len(self._subscriptions),
        )

    def _unregister(self, sub: Subscription) -> None:
        if sub not in self._subscriptions:
            return
        self._subscriptions.discard(sub)
        staff_subs = self._by_staff[sub.staff_id]
        staff_subs.discard(sub)
        if not staff_subs:
            del self._by_staff[sub.staff_id]
        _index(self._active_index, sub, sub.active_group_ids, ())
        _index(self._ogs_index, sub, sub.ogs_group_ids, ())
        self._logger.info(
            "SSE client disconnected user_id=%d reason=%s total_clients=%d",
            sub.staff_id,
            sub.closed_reason,
            len(self._subscriptions),
        )

    def _move(self, sub: Subscription, active: frozenset[int], ogs: frozenset[int]) -> None:
        if active == sub.active_group_ids and ogs == sub.ogs_group_ids:
            return
        registered = sub in self._subscriptions
        if registered:
            _index(self._active_index, sub, sub.active_group_ids, active)
            _index(self._ogs_index, sub, sub.ogs_group_ids, ogs)
        sub.active_group_ids, sub.ogs_group_ids = active, ogs
        if registered:
            self._logger.info(
                "SSE client groups changed user_id=%d subscribed_groups=%s ogs_groups=%s",
                sub.staff_id,
                sorted(active),
                sorted(ogs),
            )


def _offer(
    subscribers: Iterable[Subscription],
    event: Event,
    overflowed: list[Subscription],
    *,
    skip_active_id: int | None = None,
) -> int:
    """Append `event` to each buffer; full ones go to `overflowed`. The hot loop, kept flat."""
    delivered = 0
    for sub in subscribers:
        if skip_active_id is not None and skip_active_id in sub.active_group_ids:
            continue  # already reached through its active group
        buffer = sub._buffer
        if len(buffer) >= sub._capacity:
            overflowed.append(sub)
            continue
        buffer.append(event)
        waiter = sub._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        delivered += 1
    return delivered


def _index(index: _GroupIndex, sub: Subscription, old: Iterable[int], new: Iterable[int]) -> None:
    """Move `sub` in `index` from the `old` groups to the `new`; drop empty groups."""
    old_ids, new_ids = frozenset(old), frozenset(new)
    for group_id in old_ids - new_ids:
        members = index.get(group_id)
        if members is not None:
            members.discard(sub)
            if not members:
                del index[group_id]
    for group_id in new_ids - old_ids:
        index.setdefault(group_id, set()).add(sub)
