"""The running bridge: engine, event log, hub, single writer, presence and MQTT ingest.

`Bridge.start()` and `stop()` are called by the web app's lifespan; the pieces are plain
attributes so the HTTP layer can hand them to handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from edge_bridge.config import Settings
from edge_bridge.db import make_engine, migrate
from edge_bridge.directory import StaffDirectory
from edge_bridge.eventlog import EventLog
from edge_bridge.events import Event
from edge_bridge.hub import Hub
from edge_bridge.ingest import Ingest
from edge_bridge.metrics import Metrics
from edge_bridge.presence import Presence
from edge_bridge.store import Store, Tx
from edge_bridge.tuning import (
    GROUP_REFRESH_SECONDS,
    PRESENCE_FLUSH_SECONDS,
    PRUNE_INTERVAL_MAX_SECONDS,
)

logger = logging.getLogger(__name__)


class Bridge:
    """Everything that lives as long as the process."""

    def __init__(self, settings: Settings, *, mqtt: bool = True) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.metrics = Metrics()
        self.eventlog = EventLog(self.engine, retention_seconds=settings.event_retention_seconds)
        self.hub = Hub(buffer_size=settings.sse_client_buffer, history=self.eventlog)
        self.directory = StaffDirectory()
        self.store = Store(
            self.engine,
            broadcaster=self.hub,
            on_published=self._count_event,
            directory=self.directory,
        )
        self.presence = Presence(self.store)
        self.ingest = (
            Ingest(settings, store=self.store, presence=self.presence, metrics=self.metrics)
            if mqtt
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics.watch(self._live_metrics)

    async def start(self) -> None:
        await asyncio.to_thread(migrate, self.engine)
        self.hub.bind(asyncio.get_running_loop())
        self.hub.last_event_id = await asyncio.to_thread(self.eventlog.last_event_id)
        await self.presence.load()
        await self.refresh_subscriptions()
        await self._prune()
        if self.ingest is not None:
            await self.ingest.start()
        self._tasks = [
            asyncio.create_task(self._every(PRUNE_INTERVAL_MAX_SECONDS, self._prune), name="prune"),
            asyncio.create_task(
                self._every(PRESENCE_FLUSH_SECONDS, self.presence.flush), name="presence-flush"
            ),
            asyncio.create_task(
                self._every(GROUP_REFRESH_SECONDS, self.refresh_subscriptions), name="groups"
            ),
        ]
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
        self.hub.close_all("shutdown")
        with contextlib.suppress(Exception):
            await self.presence.flush()
        await asyncio.to_thread(self.store.close)
        self.engine.dispose()
        logger.info("Bridge stopped")

    def _count_event(self, event: Event) -> None:
        self.metrics.events_broadcast.labels(str(event.type)).inc()

    def ingest_healthy(self) -> bool:
        return self.ingest is not None and self.ingest.healthy()

    async def refresh_subscriptions(self) -> None:
        """Reload the staff directory; every open stream follows its staff member's groups.

        Runs through the writer, so it is ordered with the changes the writer announces.
        """
        connected = self.hub.staff_ids()

        def work(tx: Tx) -> None:
            self.directory.reload(tx.session)
            tx.staff_changed.update(connected)

        await self.store.write(work)

    async def _prune(self) -> None:
        await self.store.write(lambda tx: self.eventlog.prune(tx.session))

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
