"""The single writer, and the one path from a commit into the hub.

Why one writer thread: event ids must increase in commit order, or a client resuming from
id 7 could miss an id 6 that committed later. Serializing writes in this process guarantees
it (and on PostgreSQL an advisory lock serializes writers in other processes too, taken
before the ids are assigned and held to the commit). It also keeps SQLite free of writer
contention.

The writer thread only writes: it returns what committed (`Committed`: the work's result,
the events with their ids, the new groups of staff members whose supervision changed, a
directory snapshot) to the coroutine that awaited it. On SQLite that coroutine hands the
record to the `Announcer`, on the loop; on PostgreSQL the Store has no announcer, and every
instance, this one included, announces what its event-log tail reads (`tail.py`). Either
way the hub, the directory and the metrics change only on the loop, through `Announcer`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from edge_bridge.db import is_postgres, transaction
from edge_bridge.directory import DirectorySnapshot, StaffDirectory
from edge_bridge.eventlog import Groups, append_events, staff_groups_many
from edge_bridge.events import Event, NewEvent
from edge_bridge.occupancy import occupancy_events

logger = logging.getLogger(__name__)
T = TypeVar("T")
_PG_EVENT_LOCK = 0x45444745  # "EDGE": serializes event-producing transactions across processes


class Broadcaster(Protocol):
    """What the announcer needs from the hub; called on the loop only."""

    async def publish(self, event: Event) -> int: ...

    def update_staff(
        self,
        staff_id: int,
        *,
        active_group_ids: Iterable[int],
        ogs_group_ids: Iterable[int],
        keep_current: bool = False,
    ) -> None: ...

    def staff_ids(self) -> frozenset[int]: ...

    def advance(self, position: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Committed(Generic[T]):
    """What one write transaction committed, handed from the writer thread to the loop."""

    result: T
    events: tuple[Event, ...] = ()
    staff_groups: Mapping[int, Groups] = field(default_factory=dict)
    directory: DirectorySnapshot | None = None


class Announcer:
    """The one entry point into the hub, the directory and the event metric; on the loop.

    Streams gain new groups before a change's events and lose old ones after them, so the
    starter of an activity sees its activity_start and the one ending it its activity_end.
    The directory changes before the hub hears of it (see `api/sse.py`).
    """

    def __init__(
        self,
        broadcaster: Broadcaster,
        *,
        directory: StaffDirectory | None = None,
        on_published: Callable[[Event], None] | None = None,
    ) -> None:
        self.broadcaster = broadcaster
        self.directory = directory
        self.on_published = on_published

    async def announce(self, committed: Committed[Any]) -> None:
        """Everything one commit changed, in order."""
        self.gain(committed.staff_groups)
        for event in committed.events:
            await self.publish(event)
        self.settle(committed.staff_groups)
        if committed.directory is not None:
            self.reload(committed.directory)

    def gain(self, groups: Mapping[int, Groups]) -> None:
        """Before a change's events: the directory takes the new groups, streams add them."""
        if self.directory is not None:
            self.directory.set_groups(dict(groups))
        for staff_id, (active, ogs) in groups.items():
            self.broadcaster.update_staff(
                staff_id, active_group_ids=active, ogs_group_ids=ogs, keep_current=True
            )

    async def publish(self, event: Event) -> None:
        await self.broadcaster.publish(event)
        if self.on_published is not None:
            self.on_published(event)

    def settle(self, groups: Mapping[int, Groups]) -> None:
        """After a change's events: streams take exactly the new groups."""
        for staff_id, (active, ogs) in groups.items():
            self.broadcaster.update_staff(staff_id, active_group_ids=active, ogs_group_ids=ogs)

    def advance(self, position: int) -> None:
        """The feed has read the log up to `position` (ids routed to no stream included)."""
        self.broadcaster.advance(position)

    def reload(self, snapshot: DirectorySnapshot) -> None:
        """A whole new directory; every open stream follows its staff member's groups
        (a staff member no longer there has none)."""
        if self.directory is not None:
            self.directory.replace(snapshot)
        empty: Groups = (frozenset(), frozenset())
        for staff_id in self.broadcaster.staff_ids():
            active, ogs = snapshot.groups.get(staff_id, empty)
            self.broadcaster.update_staff(staff_id, active_group_ids=active, ogs_group_ids=ogs)


@dataclass
class Tx:
    """One write transaction: the session, a lookup cache, and what committed.

    Events are collected by `emit` and inserted together just before the commit, in emit
    order, so a batch of scans costs one event insert instead of one per event. Rooms whose
    children changed add one `occupancy` event for the admins at the end.
    """

    session: Session
    events: list[Event] = field(default_factory=list)
    staff_changed: set[int] = field(default_factory=set)
    cache: dict[str, Any] = field(default_factory=dict)
    rooms_changed: set[int] = field(default_factory=set)
    directory: DirectorySnapshot | None = None  # set by a directory reload
    _pending: list[NewEvent] = field(default_factory=list)

    def emit(self, new_event: NewEvent) -> None:
        """Append the event to the log in this transaction; it is published after the commit."""
        self._pending.append(new_event)

    def supervision_changed(self, staff_id: int) -> None:
        """That staff member's open streams must follow their new groups after the commit."""
        self.staff_changed.add(staff_id)

    def room_changed(self, room_id: int) -> None:
        """A child came or left there: the commit carries one `occupancy` event for admins."""
        self.rooms_changed.add(room_id)

    def flush_events(self) -> dict[int, Groups]:
        """Insert the collected events (ids in emit order); called once before the commit.

        Returns the changed staff members' groups. On PostgreSQL they go into the log too,
        around the events, for every instance's tail; the event lock is taken before any id
        is assigned and held to the commit, so ids become visible in order.
        """
        if self.rooms_changed:
            self._pending.extend(occupancy_events(self.session, self.rooms_changed))
            self.rooms_changed = set()
        session = self.session
        groups = staff_groups_many(session, self.staff_changed) if self.staff_changed else {}
        postgres = is_postgres(session.get_bind())  # type: ignore[arg-type]
        if not self._pending and not (postgres and groups):
            return groups
        if postgres:  # held already when the store runs it; taken here for any other caller
            session.exec(text(f"SELECT pg_advisory_xact_lock({_PG_EVENT_LOCK})"))  # type: ignore[call-overload]
        logged = groups if postgres else None
        self.events.extend(append_events(session, self._pending, staff_groups=logged))
        self._pending = []
        return groups


class Store:
    """Runs write work on one thread and read work on the default executor.

    With an `announcer` (SQLite), `write` announces each commit on the loop before it
    returns; without one (PostgreSQL), the event-log tail does.
    """

    def __init__(self, engine: Engine, *, announcer: Announcer | None = None) -> None:
        self.engine = engine
        self.announcer = announcer
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")
        # Commits not yet announced, in commit order (filled by done-callbacks on the loop).
        self._unannounced: deque[Committed[Any]] = deque()
        self._late: set[asyncio.Task[None]] = set()

    async def write(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in one write transaction; announce what committed; return its result."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._writer, self.commit_blocking, work)
        if self.announcer is None:
            return (await future).result
        # The writer's futures complete in commit order and their callbacks run on the loop
        # in that order, so the queue holds commits in order whichever coroutine drains it.
        future.add_done_callback(self._committed)
        try:
            committed = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The caller gave up, the commit may still happen: announce it anyway.
            future.add_done_callback(lambda _: self._announce_later(loop))
            raise
        await self._announce_pending()
        return committed.result

    def _committed(self, future: asyncio.Future[Committed[Any]]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._unannounced.append(future.result())

    def _announce_later(self, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(self._announce_pending())
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def _announce_pending(self) -> None:
        assert self.announcer is not None
        while self._unannounced:
            await self.announcer.announce(self._unannounced.popleft())

    def commit_blocking(self, work: Callable[[Tx], T]) -> Committed[T]:
        """Run `work` in one transaction on the calling thread; return what committed."""
        with transaction(self.engine) as session:
            if is_postgres(self.engine):
                # Every write, on every instance, holds the event lock from its first read to
                # its commit: two instances never decide on the same state at once (a manual
                # check-out here and a scan there would both close the same visit).
                session.exec(text(f"SELECT pg_advisory_xact_lock({_PG_EVENT_LOCK})"))  # type: ignore[call-overload]
            tx = Tx(session)
            result = work(tx)
            groups = tx.flush_events()
        return Committed(result, tuple(tx.events), groups, tx.directory)

    def write_blocking(self, work: Callable[[Tx], T]) -> T:
        """`commit_blocking`'s result alone, for tools and tests that announce nothing."""
        return self.commit_blocking(work).result

    async def read(self, work: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(self.read_blocking, work)

    def read_blocking(self, work: Callable[[Session], T]) -> T:
        with Session(self.engine, expire_on_commit=False) as session:
            return work(session)

    def close(self) -> None:
        self._writer.shutdown(wait=True, cancel_futures=False)
