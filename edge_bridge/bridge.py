"""The running bridge: engine, event log, hub, single writer, presence, MQTT ingest and the
end of the school day.

What committed reaches the hub by one path, `store.Announcer`, on the loop: fed by the store
after each commit on SQLite (one process), and on PostgreSQL only by the event-log tail
(`tail.py`), in every instance, so each sees what any instance wrote.

Per-school figures for `/metrics` are read at scrape time: open streams from the hub,
open visits from the `occupancy` events every commit that moves a child carries (seeded
from the database at start, `metrics.OpenVisitCounts`), every school of the directory
listed, with 0 where it has none.

`Bridge.start()` and `stop()` are called by the web app's lifespan; the pieces are plain
attributes so the HTTP layer can hand them to handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlmodel import Session, select

from edge_bridge.config import Settings
from edge_bridge.day_end import DayEnd
from edge_bridge.db import is_postgres, make_engine, migrate
from edge_bridge.directory import StaffDirectory, load_directory
from edge_bridge.eventlog import EventLog
from edge_bridge.events import Event
from edge_bridge.hub import Hub
from edge_bridge.ingest import Ingest
from edge_bridge.metrics import Metrics, OpenVisitCounts, SchoolValues
from edge_bridge.models import Room, utcnow
from edge_bridge.occupancy import present_by_room
from edge_bridge.presence import Presence
from edge_bridge.scans import prune_processed_scans
from edge_bridge.store import Announcer, Store, Tx
from edge_bridge.tail import EventTail, register_tail_metrics
from edge_bridge.tuning import (
    GROUP_REFRESH_SECONDS,
    PRESENCE_FLUSH_SECONDS,
    PRUNE_INTERVAL_MAX_SECONDS,
    TAIL_CATCH_UP_WAIT_SECONDS,
)

logger = logging.getLogger(__name__)


def prune_interval_seconds(settings: Settings) -> float:
    """How often old events are pruned: a quarter of the retention, at most every 5 min.

    Replay compares ages itself, so this only bounds how long pruned rows linger.
    """
    return min(PRUNE_INTERVAL_MAX_SECONDS, settings.event_retention_seconds / 4)


class Bridge:
    """Everything that lives as long as the process."""

    def __init__(
        self, settings: Settings, *, encode: Callable[[Event], bytes], mqtt: bool = True
    ) -> None:
        """`encode` is the stream's frame encoder (`api.sse.encode_event`), given to the hub."""
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.metrics = Metrics(instance_id=settings.instance)
        self.eventlog = EventLog(
            self.engine,
            retention_seconds=settings.event_retention_seconds,
            replay_limit=settings.sse_replay_limit,
        )
        self.hub = Hub(
            encode=encode,
            buffer_bytes=settings.sse_client_buffer,
            history=self.eventlog,
            retention_seconds=settings.event_retention_seconds,
            replay_limit=settings.sse_replay_limit,
            max_streams_per_staff=settings.sse_max_streams_per_staff,
            max_streams=settings.sse_max_streams,
            catch_up_wait_seconds=TAIL_CATCH_UP_WAIT_SECONDS if is_postgres(self.engine) else 0,
        )
        self.directory = StaffDirectory()
        self.announcer = Announcer(
            self.hub, directory=self.directory, on_published=self._count_event
        )
        # PostgreSQL: the hub hears only the tail, in every instance; SQLite: the store.
        self.tail = (
            EventTail(self.engine, self.announcer, eventlog=self.eventlog)
            if is_postgres(self.engine)
            else None
        )
        self.store = Store(self.engine, announcer=None if self.tail else self.announcer)
        self.presence = Presence(
            self.store,
            tz=settings.timezone,
            timezone_of=lambda school_id: self.directory.school_timezone(
                school_id, settings.timezone
            ),
        )
        self.day_end = DayEnd(self.store, tz=settings.timezone, day_end=settings.day_end)
        self.ingest = (
            Ingest(settings, store=self.store, presence=self.presence, metrics=self.metrics)
            if mqtt
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.open_visits = OpenVisitCounts()
        self.metrics.watch(self._live_metrics)
        self.metrics.watch_schools(self._school_metrics)
        if self.tail is not None:
            register_tail_metrics(self.metrics.registry, self.tail)

    async def start(self) -> None:
        await asyncio.to_thread(migrate, self.engine)
        if self.tail is not None:
            await self.tail.start()  # position and directory, before anything is written
        else:
            self.hub.last_event_id = await asyncio.to_thread(self.eventlog.last_event_id)
            await self.refresh_subscriptions()
        # After the feed's position is taken: what it delivers from there is newer.
        self.open_visits.seed(await self.store.read(_children_by_room))
        await self.presence.load()
        await self._prune()
        await self.day_end.catch_up()  # a day end passed while the bridge was down
        if self.ingest is not None:
            await self.ingest.start()
        self._tasks = [
            asyncio.create_task(
                self._every(prune_interval_seconds(self.settings), self._prune), name="prune"
            ),
            asyncio.create_task(
                self._every(PRESENCE_FLUSH_SECONDS, self.presence.flush), name="presence-flush"
            ),
            asyncio.create_task(self.day_end.run(), name="day-end"),
        ]
        if self.tail is None:  # on PostgreSQL the tail re-reads the directory itself
            self._tasks.append(
                asyncio.create_task(
                    self._every(GROUP_REFRESH_SECONDS, self.refresh_subscriptions),
                    name="groups",
                )
            )
        logger.info("Bridge started last_event_id=%d", self.hub.last_event_id)

    async def stop(self) -> None:
        """Stop taking scans, finish the batch in flight, close streams, release the database."""
        if self.ingest is not None:
            await self.ingest.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.tail is not None:
            await self.tail.stop()
        self.hub.close_all("shutdown")
        with contextlib.suppress(Exception):
            await self.presence.flush()
        await asyncio.to_thread(self.store.close)
        self.engine.dispose()
        logger.info("Bridge stopped")

    def _count_event(self, event: Event) -> None:
        self.metrics.events_broadcast.labels(str(event.type)).inc()
        self.open_visits.observe(event)

    def ingest_healthy(self) -> bool:
        return self.ingest is not None and self.ingest.healthy()

    def tail_status(self) -> str | None:
        """The event-log tail's `status()` (PostgreSQL); None on SQLite, which has none."""
        return None if self.tail is None else self.tail.status()

    def database_unreachable(self) -> bool:
        """The ingest met a transient database error and is still waiting for it to pass."""
        return self.ingest is not None and self.ingest.database_unreachable

    async def refresh_subscriptions(self) -> None:
        """SQLite: reload the staff directory; every open stream follows its staff member's
        groups (an import in another process changes them).

        Read through the writer and announced like its commits, so it is ordered with them.
        """

        def work(tx: Tx) -> None:
            tx.directory = load_directory(tx.session)

        await self.store.write(work)

    async def _prune(self) -> None:
        await self.store.write(lambda tx: self.eventlog.prune(tx.session))
        retention = self.settings.processed_scan_retention_seconds
        await self.store.write(
            lambda tx: prune_processed_scans(tx.session, now=utcnow(), retention_seconds=retention)
        )

    @staticmethod
    async def _every(seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                logger.exception("Background job failed job=%s", getattr(job, "__name__", job))

    def _live_metrics(self) -> dict[str, float]:
        stats = self.hub.stats()
        return {
            "clients": stats.total_clients,
            "slow_disconnects": stats.slow_disconnects,
            "replays": stats.replays,
            "resyncs": stats.resyncs,
            "mqtt_connected": 1.0 if self.ingest_healthy() else 0.0,
            "readers_online": self.presence.online_count(),
        }

    def _school_metrics(self) -> SchoolValues:
        schools = dict.fromkeys((school.id for school in self.directory.schools()), 0)
        clients = getattr(self.hub.stats(), "schools", {})  # HubStats.schools: streams per school
        return {
            "open_visits": {**schools, **self.open_visits.by_school()},
            "clients": {**schools, **clients},
        }


def _children_by_room(session: Session) -> list[tuple[int, int, int]]:
    """(room id, school id, children present) for every room."""
    present = present_by_room(session)
    rooms = session.exec(select(Room.id, Room.school_id)).all()
    return [(room_id, school_id, present.get(room_id, 0)) for room_id, school_id in rooms]
