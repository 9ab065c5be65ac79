"""In-process pub/sub for realtime events: publish, subscribe with replay, live group changes.

The hub knows nothing of HTTP, SSE or JSON (STYLE §6): it is given an `encode` function
(`api/sse.py` passes its frame encoder) and calls it once per published event, so every
stream shares the same bytes. `api/sse.py` turns a `Subscription` into a stream. Everything
here runs on one event loop and has one feed: the store's announcer on SQLite, the event-log
tail on PostgreSQL (`store.Announcer`, `tail.py`), which hand each event over once, in id
order; the hub ignores an id it has already passed.

Schools are tenants: a subscription belongs to one school (`school_id`, required) and every
index is keyed by it, the groups' by (school_id, group_id) and the admins' streams by school,
so an event reaches only streams of its own school, whatever its group ids; an event without
a school (`Event.school_id` None) reaches no stream. Ring and log replay apply the same rule
(`routes_to`, and the log's `school_id` filter).

Built to hold 10,000 subscriptions cheaply: each is a list of shared frames plus a future
that exists only while its reader waits, so publishing is one loop over the indexed
recipients with no task, queue or lock per event.

Slow clients are told by bytes, not by events: a subscription may hold `buffer_bytes` of
frames not yet taken by its stream. A burst of events is no problem for a client that keeps
reading; one that stops taking bytes is closed (the send timeout in `api/sse.py` catches a
client whose socket stopped draining, this bound one that falls too far behind). Closing
drops nothing silently: the browser reconnects with `Last-Event-ID` and replays what it
missed. A replay's backlog may exceed the bound until the client has caught up.

Limits: `max_streams_per_staff` open streams per staff member (a further one closes their
oldest), `max_streams` in total (`is_full()`, checked before a stream starts), at most
`replay_limit` events per replay (beyond: one `resync`), and `HISTORY_READS_AT_ONCE` event-log
reads at a time, so a reconnect storm queues instead of running hundreds of reads at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Protocol

from edge_bridge.events import Event, EventType
from edge_bridge.tuning import HUB_HISTORY_READS_AT_ONCE, HUB_RING_SIZE

logger = logging.getLogger(__name__)

# (school_id, group_id): group ids are only ever looked up within the event's school.
_GroupKey = tuple[int, int]
_GroupIndex = dict[_GroupKey, set["Subscription"]]
Encoder = Callable[[Event], bytes]
Clock = Callable[[], datetime]
# One buffered event: the event and its encoded frame (the same bytes object for every stream).
_Item = tuple[Event, bytes]


class EventHistory(Protocol):
    """The event log, as far as replay needs it (implemented by the database event log)."""

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
        """Events of `school_id` with id > last_event_id (and <= up_to, if given) routed to
        those groups (and, for an admin, the school's admins' events), in id order.

        None if last_event_id is older than what is retained, or if more events than the
        log's replay limit follow it (the client must resync).
        """
        ...


@dataclass(frozen=True, slots=True)
class HubStats:
    """Counts for `GET /api/sse/stats` and metrics; groups map a group id to its subscribers.

    `schools` maps a school id to its open streams (schools without any are left out). For
    one school's view (`Hub.stats(school_id=...)`) the clients, groups and `schools` are that
    school's only; the lifetime counters are always the whole process's.
    """

    total_clients: int
    groups: dict[int, int]
    ogs_groups: dict[int, int]
    events_published: int
    replays: int
    resyncs: int
    slow_disconnects: int
    schools: dict[int, int]


def routes_to(event: Event, sub: Subscription) -> bool:
    """Whether `event` belongs on `sub`'s stream (CONTRACT §5 routing; admins' events too):
    only ever an event of the stream's own school (one without a school reaches no one)."""
    return event.school_id == sub.school_id and (
        event.route_active_group_id in sub.active_group_ids
        or event.route_ogs_group_id in sub.ogs_group_ids
        or (event.route_admin and sub.admin)
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Subscription:
    """One client's stream: an async iterator of events that ends as soon as it is closed.

    `read()` gives the stream the encoded frames instead, several at once, and can wait until
    a deadline (the stream's heartbeat): one timer per deadline, not one per wait.
    """

    __slots__ = (
        "_alarm",
        "_alarm_at",
        "_buffer",
        "_buffered_bytes",
        "_hub",
        "_limit",
        "_waiter",
        "active_group_ids",
        "admin",
        "closed_reason",
        "ogs_group_ids",
        "school_id",
        "staff_id",
        "start_after_id",
    )

    def __init__(
        self,
        hub: Hub,
        *,
        school_id: int,
        staff_id: int,
        active_group_ids: frozenset[int],
        ogs_group_ids: frozenset[int],
        admin: bool = False,
    ) -> None:
        self._hub = hub
        self.school_id = school_id  # part of every index key: only this school's events
        self.staff_id = staff_id
        self.admin = admin  # also receives the events for the school's admins
        self.active_group_ids = active_group_ids
        self.ogs_group_ids = ogs_group_ids
        self.closed_reason: str | None = None
        # Events with larger ids follow on this stream: the id a client that has seen
        # nothing else resumes from (set when it registers, or the replay's starting point).
        self.start_after_id = 0
        self._buffer: list[_Item] = []  # a list: an empty deque costs 600 bytes per stream
        self._buffered_bytes = 0  # bytes of the frames in `_buffer`, not yet taken
        self._limit = hub.buffer_bytes  # raised for a replay's backlog until it is taken
        self._waiter: asyncio.Future[None] | None = None
        # The timer of `read(until=...)`: armed once per deadline, None again once it rang.
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at: float | None = None

    def __repr__(self) -> str:
        return (
            f"Subscription(school_id={self.school_id}, staff_id={self.staff_id}, "
            f"active={sorted(self.active_group_ids)}, "
            f"ogs={sorted(self.ogs_group_ids)}, buffered={len(self._buffer)}, "
            f"buffered_bytes={self._buffered_bytes}, closed_reason={self.closed_reason!r})"
        )

    @property
    def buffered_bytes(self) -> int:
        """Bytes of frames held for this stream and not yet taken by it."""
        return self._buffered_bytes

    def set_groups(self, active_group_ids: Iterable[int], ogs_group_ids: Iterable[int]) -> None:
        """Follow a supervision change: events published from now on use the new groups."""
        self._hub._move(self, frozenset(active_group_ids), frozenset(ogs_group_ids))

    def close(self, reason: str) -> None:
        """End the stream now (buffered events are dropped) and leave the hub; idempotent."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        self._buffer.clear()
        self._buffered_bytes = 0
        self._wake()
        self._hub._unregister(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if not await self._wait():
            raise StopAsyncIteration
        item = self._buffer.pop(0)
        self._taken(len(item[1]))
        return item[0]

    async def read(self, max_bytes: int, *, until: float | None = None) -> bytes | None:
        """The next frames joined, at least one and else at most `max_bytes`; b"" once closed.

        Waits while nothing is buffered, and with `until` (a time of the event loop's clock)
        no longer than that: None when it passed with nothing buffered. A client that fell
        behind gets one write of many frames instead of one write each.
        """
        # The wait of `_wait`, inlined: an idle stream holds one coroutine frame less.
        while not self._buffer:
            if self.closed_reason is not None:
                return b""
            loop = asyncio.get_running_loop()
            if until is not None:
                if self._alarm_at != until:
                    if self._alarm is not None:
                        self._alarm.cancel()
                    self._alarm_at = until
                    self._alarm = loop.call_at(until, self._ring)
                elif self._alarm is None:
                    return None  # this deadline's alarm rang
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.closed_reason is not None:
            return b""
        buffer = self._buffer
        first = buffer[0][1]
        size, count, end = len(first), 1, len(buffer)
        while count < end and size + len(buffer[count][1]) <= max_bytes:
            size += len(buffer[count][1])
            count += 1
        frames = first if count == 1 else b"".join([frame for _, frame in buffer[:count]])
        del buffer[:count]
        self._taken(size)
        return frames

    async def _wait(self) -> bool:
        """Wait until something is buffered; False once the stream is closed."""
        while self.closed_reason is None:
            if self._buffer:
                return True
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return False

    def _taken(self, size: int) -> None:
        self._buffered_bytes -= size
        bound = self._hub.buffer_bytes
        if self._limit > bound and self._buffered_bytes < bound:
            self._limit = bound  # caught up after a replay

    def _ring(self) -> None:
        self._alarm = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _start_with(self, missed: list[_Item], *, seen_up_to: int | None) -> None:
        """Put `missed` in front of what was buffered live, dropping live events already seen."""
        if self.closed_reason is not None:
            return
        live = (item for item in self._buffer if seen_up_to is None or item[0].id > seen_up_to)
        self._buffer = list(chain(missed, live))
        self._buffered_bytes = sum(len(frame) for _, frame in self._buffer)
        # The backlog may exceed the bound; allow the bound on top until the client catches up.
        self._limit = self._buffered_bytes + self._hub.buffer_bytes
        self._wake()


class Hub:
    """Routes each published event to the subscriptions of its active group and home group."""

    def __init__(
        self,
        *,
        encode: Encoder,
        buffer_bytes: int = 1_048_576,
        history: EventHistory | None = None,
        ring_size: int = HUB_RING_SIZE,
        retention_seconds: float | None = None,
        replay_limit: int = 2_000,
        max_streams_per_staff: int = 10,
        max_streams: int = 20_000,
        catch_up_wait_seconds: float = 0.0,
        clock: Clock = _utcnow,
        logger: logging.Logger | None = None,
    ) -> None:
        """`encode` turns an event into the bytes streams send; `retention_seconds` is how
        long the event log keeps events: a client that missed older ones gets a `resync`.

        `catch_up_wait_seconds`: a `Last-Event-ID` above the newest id this hub has seen
        waits that long for the feed to get there (another instance wrote it and this one's
        tail is a moment behind) before it counts as ahead of the log (a restore: resync)."""
        for name, value in (
            ("buffer_bytes", buffer_bytes),
            ("replay_limit", replay_limit),
            ("max_streams_per_staff", max_streams_per_staff),
            ("max_streams", max_streams),
        ):
            if value < 1:
                msg = f"{name} must be at least 1, got: {value}"
                raise ValueError(msg)
        self.buffer_bytes = buffer_bytes
        self.last_event_id = 0
        self._encode = encode
        self._history = history
        self._ring_size = ring_size
        self._ring: deque[_Item] = deque()
        self._ring_bytes = 0
        self._retention = (
            None if retention_seconds is None else timedelta(seconds=retention_seconds)
        )
        self._replay_limit = replay_limit
        self._max_per_staff = max_streams_per_staff
        self._max_streams = max_streams
        self._clock = clock
        self._history_reads = asyncio.Semaphore(HUB_HISTORY_READS_AT_ONCE)
        self._logger = logger or logging.getLogger(__name__)
        self._catch_up_wait = catch_up_wait_seconds
        self._position_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._subscriptions: set[Subscription] = set()
        # Per staff member, their open subscriptions, oldest first (a dict keeps the order).
        self._by_staff: dict[int, dict[Subscription, None]] = {}
        self._active_index: _GroupIndex = {}
        self._ogs_index: _GroupIndex = {}
        # Per school, the streams that get the school's admins' events.
        self._admins: dict[int, set[Subscription]] = {}
        self._by_school: dict[int, int] = {}  # open streams per school
        self._events_published = 0
        self._replays = 0
        self._resyncs = 0
        self._slow_disconnects = 0

    async def publish(self, event: Event) -> int:
        """Deliver `event` to its subscribers and return how many; never waits, never raises.

        An id at or below the newest one seen is ignored (0): whoever feeds the hub (the
        store on SQLite, the event-log tail on PostgreSQL) hands each event over once, in id
        order, and this makes a repeat harmless instead of a duplicate on every stream.
        """
        if event.id <= self.last_event_id:
            self._logger.debug(
                "SSE event ignored reason=not_newer event_id=%d last_event_id=%d",
                event.id,
                self.last_event_id,
            )
            return 0
        return self._deliver(event)

    def advance(self, position: int) -> None:
        """The feed has read the log up to `position`, including ids routed to no stream."""
        if position > self.last_event_id:
            self.last_event_id = position
            self._position_reached()

    def subscribe(
        self,
        *,
        school_id: int,
        staff_id: int,
        active_group_ids: Iterable[int],
        ogs_group_ids: Iterable[int] = (),
        last_event_id: int | None = None,
        admin: bool = False,
    ) -> AbstractAsyncContextManager[Subscription]:
        """Open a stream of `school_id`'s events: missed events after `last_event_id` first
        (or one resync), then live.

        A staff member's stream beyond `max_streams_per_staff` closes their oldest one.
        """
        sub = Subscription(
            self,
            school_id=school_id,
            staff_id=staff_id,
            active_group_ids=frozenset(active_group_ids),
            ogs_group_ids=frozenset(ogs_group_ids),
            admin=admin,
        )
        return self._open(sub, last_event_id)

    def is_full(self) -> bool:
        """Whether `max_streams` are open: the caller refuses a new stream before it starts."""
        return len(self._subscriptions) >= self._max_streams

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

    def stats(self, *, school_id: int | None = None) -> HubStats:
        """Current subscriber counts and lifetime counters: of the whole process, or with
        `school_id` the subscriber counts of that school only (`GET /api/sse/stats`)."""
        if school_id is None:
            total, schools = len(self._subscriptions), dict(self._by_school)
        else:
            total = self._by_school.get(school_id, 0)
            schools = {school_id: total} if total else {}
        return HubStats(
            total_clients=total,
            groups=_counts(self._active_index, school_id),
            ogs_groups=_counts(self._ogs_index, school_id),
            events_published=self._events_published,
            replays=self._replays,
            resyncs=self._resyncs,
            slow_disconnects=self._slow_disconnects,
            schools=schools,
        )

    def _open(self, sub: Subscription, last_event_id: int | None) -> _Opened:
        return _Opened(self, sub, last_event_id)

    def _deliver(self, event: Event) -> int:
        try:
            return self._broadcast(event)
        except Exception:
            self._logger.exception("SSE event broadcast failed event_id=%d", event.id)
            return 0

    def _broadcast(self, event: Event) -> int:
        item = (event, self._encode(event))
        self.last_event_id = event.id
        if self._position_waiters:
            self._position_reached()
        self._remember(item)
        self._events_published += 1
        overflowed: list[Subscription] = []
        active_id, ogs_id = event.route_active_group_id, event.route_ogs_group_id
        school = event.school_id
        recipients = 0
        # No school, no stream: a service that forgot it loses the event, never leaks it.
        if school is not None and active_id is not None:
            active_subs = self._active_index.get((school, active_id), ())
            recipients += _offer(active_subs, item, overflowed)
        if school is not None and ogs_id is not None:
            ogs_subs = self._ogs_index.get((school, ogs_id), ())
            recipients += _offer(ogs_subs, item, overflowed, skip_active_id=active_id)
        if school is not None and event.route_admin:  # never also to a group: no repeats
            recipients += _offer(self._admins.get(school, ()), item, overflowed)
        for sub in overflowed:
            self._close_slow(sub, len(item[1]))
        self._logger.debug(
            "SSE event broadcast active_group_id=%s event_type=%s recipient_count=%d"
            " event_id=%d ogs_group_id=%s school_id=%s",
            event.active_group_id,
            event.type,
            recipients,
            event.id,
            ogs_id,
            school,
        )
        if not recipients:
            self._logger.debug("SSE event has no subscribers event_id=%d", event.id)
        return recipients

    def _remember(self, item: _Item) -> None:
        """Keep the newest `ring_size` events (and their bytes) for reconnects."""
        ring = self._ring
        ring.append(item)
        self._ring_bytes += len(item[1])
        while len(ring) > self._ring_size:
            self._ring_bytes -= len(ring.popleft()[1])

    def _close_slow(self, sub: Subscription, offered_bytes: int) -> None:
        self._slow_disconnects += 1
        self._logger.warning(
            "SSE client closed slow=True reason=buffer_full staff_id=%d school_id=%d buffered=%d"
            " buffered_bytes=%d offered_bytes=%d limit_bytes=%d",
            sub.staff_id,
            sub.school_id,
            len(sub._buffer),
            sub._buffered_bytes,
            offered_bytes,
            sub._limit,
        )
        sub.close("slow")

    async def _catch_up(self, sub: Subscription, last_event_id: int) -> None:
        missed: list[_Item] | None
        if last_event_id > self.last_event_id and self._catch_up_wait > 0:
            await self._wait_for_position(last_event_id)
        # `up_to`: the newest id the replay covers; live events up to it are not sent again.
        up_to = self.last_event_id
        if last_event_id > self.last_event_id:
            missed, source = None, "ahead"  # ids went backwards (a restore): refetch
        elif self._ring_covers(last_event_id):
            missed, source = self._from_ring(sub, last_event_id), "ring"
        else:
            (missed, up_to), source = await self._read_history(sub, last_event_id), "history"
        if missed is None:  # one resync frame stands for everything up to now
            self._resyncs += 1
            resync = Event.stream_local(EventType.RESYNC, id_=self.last_event_id)
            missed, source = [(resync, self._encode(resync))], f"resync reason={source}"
            seen_up_to = self.last_event_id
        else:
            self._replays += 1
            # The client has everything up to its id (live events buffered while this hub's
            # feed caught up to it are not sent again), and the replay everything to `up_to`.
            seen_up_to = max(last_event_id, up_to)
        sub._start_with(missed, seen_up_to=seen_up_to)
        self._logger.info(
            "SSE client replay user_id=%d school_id=%d last_event_id=%d source=%s replayed=%d",
            sub.staff_id,
            sub.school_id,
            last_event_id,
            source,
            len(missed),
        )

    async def _wait_for_position(self, position: int) -> None:
        """Until the feed has reached `position`, at most `catch_up_wait_seconds`."""
        waiter = asyncio.get_running_loop().create_future()
        entry = (position, waiter)
        self._position_waiters.append(entry)
        try:
            async with asyncio.timeout(self._catch_up_wait):
                await waiter
        except TimeoutError:
            pass
        finally:
            if entry in self._position_waiters:
                self._position_waiters.remove(entry)

    def _position_reached(self) -> None:
        waiting = []
        for position, waiter in self._position_waiters:
            if position <= self.last_event_id:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((position, waiter))
        self._position_waiters = waiting

    def _ring_covers(self, last_event_id: int) -> bool:
        if self._ring:
            return self._ring[0][0].id <= last_event_id + 1
        # Nothing published since start: only the log knows what came before, if there is one.
        return self._history is None and last_event_id >= self.last_event_id

    def _from_ring(self, sub: Subscription, last_event_id: int) -> list[_Item] | None:
        """The ring's events after the id for `sub`; None if the first one missed is older
        than the retention (the log may have pruned it already) or there are too many."""
        after = [item for item in self._ring if item[0].id > last_event_id]
        if after and self._expired(after[0][0].timestamp):
            return None
        missed = [item for item in after if routes_to(item[0], sub)]
        return None if len(missed) > self._replay_limit else missed

    def _expired(self, timestamp: datetime) -> bool:
        return self._retention is not None and timestamp < self._clock() - self._retention

    async def _read_history(
        self, sub: Subscription, last_event_id: int
    ) -> tuple[list[_Item] | None, int]:
        """The log's events for `sub` after the id, up to the newest id this hub has seen
        when the read starts (newer ones reach `sub` live), and that id."""
        up_to = self.last_event_id
        if self._history is None:
            return None, up_to
        # Live events keep arriving while the read waits its turn and runs, and the client
        # cannot take them yet: let them use as many bytes as the ring holds on top.
        sub._limit = self.buffer_bytes + self._ring_bytes
        try:
            async with self._history_reads:
                up_to = self.last_event_id
                if sub.closed_reason is not None:
                    return [], up_to
                missed = await self._history.events_after(
                    last_event_id,
                    school_id=sub.school_id,
                    active_group_ids=sub.active_group_ids,
                    ogs_group_ids=sub.ogs_group_ids,
                    admin=sub.admin,
                    up_to=up_to,
                )
        finally:
            sub._limit = self.buffer_bytes
        if missed is None:
            return None, up_to
        # The log filters by school already; checked again here, so that a stream's school
        # does not rest on one SQL predicate alone.
        own = (event for event in missed if event.school_id == sub.school_id)
        items = [(event, self._encode(event)) for event in sorted(own, key=lambda e: e.id)]
        return items, up_to

    def _register(self, sub: Subscription) -> None:
        # Every event with a larger id is published after this point and reaches `sub`.
        sub.start_after_id = self.last_event_id
        staff_subs = self._by_staff.setdefault(sub.staff_id, {})
        while len(staff_subs) >= self._max_per_staff:
            oldest = next(iter(staff_subs))
            self._logger.warning(
                "SSE client closed reason=too_many_streams user_id=%d open_streams=%d limit=%d",
                sub.staff_id,
                len(staff_subs),
                self._max_per_staff,
            )
            oldest.close("too_many_streams")
            staff_subs = self._by_staff.setdefault(sub.staff_id, {})
        self._subscriptions.add(sub)
        staff_subs[sub] = None
        school = sub.school_id
        self._by_school[school] = self._by_school.get(school, 0) + 1
        _index(self._active_index, sub, (), sub.active_group_ids)
        _index(self._ogs_index, sub, (), sub.ogs_group_ids)
        if sub.admin:
            self._admins.setdefault(school, set()).add(sub)
        self._logger.info(
            "SSE client connected user_id=%d school_id=%d subscribed_groups=%s ogs_groups=%s"
            " total_clients=%d",
            sub.staff_id,
            school,
            sorted(sub.active_group_ids),
            sorted(sub.ogs_group_ids),
            len(self._subscriptions),
        )

    def _unregister(self, sub: Subscription) -> None:
        if sub not in self._subscriptions:
            return
        self._subscriptions.discard(sub)
        staff_subs = self._by_staff[sub.staff_id]
        staff_subs.pop(sub, None)
        if not staff_subs:
            del self._by_staff[sub.staff_id]
        school = sub.school_id
        remaining = self._by_school.get(school, 0) - 1
        if remaining > 0:
            self._by_school[school] = remaining
        else:
            self._by_school.pop(school, None)
        _index(self._active_index, sub, sub.active_group_ids, ())
        _index(self._ogs_index, sub, sub.ogs_group_ids, ())
        admins = self._admins.get(school)
        if admins is not None:
            admins.discard(sub)
            if not admins:
                del self._admins[school]
        self._logger.info(
            "SSE client disconnected user_id=%d school_id=%d reason=%s total_clients=%d",
            sub.staff_id,
            school,
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
                "SSE client groups changed user_id=%d school_id=%d subscribed_groups=%s"
                " ogs_groups=%s",
                sub.staff_id,
                sub.school_id,
                sorted(active),
                sorted(ogs),
            )


class _Opened:
    """`Hub.subscribe`'s context manager, as a class: an open stream holds this small object,
    not a suspended generator frame. Closes the subscription however the body ends."""

    __slots__ = ("_hub", "_last_event_id", "_sub")

    def __init__(self, hub: Hub, sub: Subscription, last_event_id: int | None) -> None:
        self._hub, self._sub, self._last_event_id = hub, sub, last_event_id

    async def __aenter__(self) -> Subscription:
        hub, sub, last_event_id = self._hub, self._sub, self._last_event_id
        # Register first so live events buffer while the missed ones are looked up.
        hub._register(sub)
        if last_event_id is not None:
            sub.start_after_id = last_event_id
            try:
                await hub._catch_up(sub, last_event_id)
            except BaseException as exc:
                self._close(exc)
                raise
        return sub

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        if isinstance(exc, asyncio.CancelledError):
            reason = "cancelled"
        elif isinstance(exc, Exception):
            reason = "error"
        else:
            reason = "closed"
        self._sub.close(reason)


def _offer(
    subscribers: Iterable[Subscription],
    item: _Item,
    overflowed: list[Subscription],
    *,
    skip_active_id: int | None = None,
) -> int:
    """Append `item` to each buffer; those it would take over their bound go to `overflowed`.

    The hot loop, kept flat.
    """
    delivered = 0
    size = len(item[1])
    for sub in subscribers:
        if skip_active_id is not None and skip_active_id in sub.active_group_ids:
            continue  # already reached through its active group
        if sub._buffered_bytes + size > sub._limit:
            overflowed.append(sub)
            continue
        sub._buffer.append(item)
        sub._buffered_bytes += size
        waiter = sub._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        delivered += 1
    return delivered


def _index(index: _GroupIndex, sub: Subscription, old: Iterable[int], new: Iterable[int]) -> None:
    """Move `sub` in `index` from the `old` groups to the `new` (of its school); drop empty
    groups."""
    school = sub.school_id
    old_ids, new_ids = frozenset(old), frozenset(new)
    for group_id in old_ids - new_ids:
        key = (school, group_id)
        members = index.get(key)
        if members is not None:
            members.discard(sub)
            if not members:
                del index[key]
    for group_id in new_ids - old_ids:
        index.setdefault((school, group_id), set()).add(sub)


def _counts(index: _GroupIndex, school_id: int | None) -> dict[int, int]:
    """Subscribers per group id: of every school, or of `school_id` only."""
    counts: dict[int, int] = {}
    for (school, group_id), members in index.items():
        if school_id is None or school == school_id:
            counts[group_id] = counts.get(group_id, 0) + len(members)
    return counts
