"""The single writer: every event-producing change runs here, one transaction at a time.

Why one thread: event ids must increase in commit order, or a client resuming from id 7
could miss an id 6 that committed later. Serializing writes in this process guarantees it
(and on PostgreSQL an advisory lock also serializes writers in other processes). It also
keeps SQLite free of writer contention. After each commit the writer hands events and
subscription changes to the hub in order, from this same thread, so they reach the loop in
commit order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from edge_bridge.db import is_postgres, transaction
from edge_bridge.directory import StaffDirectory
from edge_bridge.eventlog import append_events, staff_groups_many
from edge_bridge.events import Event, NewEvent
from edge_bridge.occupancy import occupancy_event

logger = logging.getLogger(__name__)
T = TypeVar("T")
_PG_EVENT_LOCK = 0x45444745  # "EDGE": serializes event-producing transactions across processes


class Broadcaster(Protocol):
    """What the store needs from the hub; both are called from the writer thread."""

    def publish_threadsafe(self, event: Event) -> None: ...

    def update_staff_threadsafe(
        self,
        staff_id: int,
        *,
        active_group_ids: frozenset[int],
        ogs_group_ids: frozenset[int],
        keep_current: bool = False,
    ) -> None: ...


@dataclass
class Tx:
    """One write transaction: the session, a lookup cache, and what to announce after commit.

    Events are collected by `emit` and inserted together just before the commit, in emit
    order, so a batch of scans costs one event insert instead of one per event. Rooms whose
    children changed add one `occupancy` event for the admins at the end.
    """

    session: Session
    events: list[Event] = field(default_factory=list)
    staff_changed: set[int] = field(default_factory=set)
    cache: dict[str, Any] = field(default_factory=dict)
    rooms_changed: set[int] = field(default_factory=set)
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

    def flush_events(self) -> None:
        """Insert the collected events (ids in emit order); called once before the commit."""
        if self.rooms_changed:
            self._pending.append(occupancy_event(self.session, self.rooms_changed))
            self.rooms_changed = set()
        if not self._pending:
            return
        if is_postgres(self.session.get_bind()):  # type: ignore[arg-type]
            self.session.exec(text(f"SELECT pg_advisory_xact_lock({_PG_EVENT_LOCK})"))  # type: ignore[call-overload]
        self.events.extend(append_events(self.session, self._pending))
        self._pending = []


class Store:
    """Runs write work on one thread and read work on the default executor."""

    def __init__(
        self,
        engine: Engine,
        *,
        broadcaster: Broadcaster | None = None,
        on_published: Callable[[Event], None] | None = None,
        directory: StaffDirectory | None = None,
    ) -> None:
        self.engine = engine
        self.broadcaster = broadcaster
        self.on_published = on_published
        self.directory = directory
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")

    async def write(self, work: Callable[[Tx], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self.write_blocking, work)

    def write_blocking(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in one transaction on the calling thread; announce after the commit."""
        with transaction(self.engine) as session:
            tx = Tx(session)
            result = work(tx)
            tx.flush_events()
            groups = staff_groups_many(session, tx.staff_changed) if tx.staff_changed else {}
        if self.directory is not None:
            self.directory.set_groups(groups)  # before the hub hears of it: see api/sse.py
        self._announce(tx, groups)
        return result

    def _announce(self, tx: Tx, groups: dict[int, tuple[frozenset[int], frozenset[int]]]) -> None:
        if self.broadcaster is None:
            return
        # Streams gain new groups before the events and lose old ones after them, so the
        # starter of an activity sees its activity_start and the one ending it its activity_end.
        for staff_id, (active, ogs) in groups.items():
            self.broadcaster.update_staff_threadsafe(
                staff_id, active_group_ids=active, ogs_group_ids=ogs, keep_current=True
            )
        for event in tx.events:
            self.broadcaster.publish_threadsafe(event)
            if self.on_published is not None:
                self.on_published(event)
        for staff_id, (active, ogs) in groups.items():
            self.broadcaster.update_staff_threadsafe(
                staff_id, active_group_ids=active, ogs_group_ids=ogs
            )

    async def read(self, work: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(self.read_blocking, work)

    def read_blocking(self, work: Callable[[Session], T]) -> T:
        with Session(self.engine, expire_on_commit=False) as session:
            return work(session)

    def close(self) -> None:
        self._writer.shutdown(wait=True, cancel_futures=False)
