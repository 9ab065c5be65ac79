"""The PostgreSQL event-log tail: how every instance's hub learns what any instance committed.

On PostgreSQL the hub is fed only from here, in every instance (the writing one included),
so there is one path from a commit to a stream whichever instance a browser is on. The tail
keeps `last_seen`, the newest log id it has handed over (at start: the log's newest id). It
is woken by `LISTEN edge_events` (each event-producing transaction sends
`pg_notify('edge_events', '<its newest id>')` at commit, see `eventlog.notify_committed`) and
reads anyway every `TAIL_POLL_SECONDS` without a wake-up, the safety net for a lost
notification. Each read takes the rows with id > last_seen in id order, at most
`TAIL_BATCH`, in a worker thread, and reads again while they come back full; the rows are
handed to the announcer on the loop: events to the hub, internal `staff_changed` rows as
"streams gain these groups" (before a commit's events) and "streams take exactly these"
(after). Ids become visible in id order (the writers' advisory lock is taken before ids are
assigned and held to the commit), so reading `id > last_seen` skips nothing; a row at or
below `last_seen` is never handed over, so nothing arrives twice.

A `directory` notification (an import, or an operator's change: `announce_directory_changed`)
makes the tail read the whole staff directory in the same snapshot as its next rows and
apply it after them; it also does so after every (re)connect and every
`GROUP_REFRESH_SECONDS`, so a notification lost while disconnected is made up for.

The LISTEN connection is a psycopg `AsyncConnection` in autocommit; when it drops (the
server restarted, the backend was terminated) the tail reconnects with backoff, then reads
everything it missed. `healthy()` (for `/ready`) is false while that connection is down or
when the tail has not been caught up for `TAIL_STALE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.engine import Engine
from sqlmodel import Session

from edge_bridge.directory import DirectorySnapshot, load_directory
from edge_bridge.eventlog import (
    DIRECTORY_CHANGED,
    EVENTS_CHANNEL,
    EventLog,
    LogRows,
    StaffChange,
    rows_after,
)
from edge_bridge.store import Announcer
from edge_bridge.tuning import (
    GROUP_REFRESH_SECONDS,
    POSTGRES_CONNECT_TIMEOUT_SECONDS,
    TAIL_BATCH,
    TAIL_POLL_SECONDS,
    TAIL_RECONNECT_MAX_SECONDS,
    TAIL_RECONNECT_MIN_SECONDS,
    TAIL_STALE_SECONDS,
)

logger = logging.getLogger(__name__)
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Batch:
    """One read: the rows, and the directory when asked for and the read reached the end."""

    rows: LogRows
    directory: DirectorySnapshot | None


def listen_conninfo(engine: Engine) -> str:
    """The libpq URL of the engine's database, for psycopg's own connection."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class EventTail:
    """Reads the event log after `last_seen` and hands what it reads to the announcer."""

    def __init__(
        self,
        engine: Engine,
        announcer: Announcer,
        *,
        eventlog: EventLog,
        poll_seconds: float = TAIL_POLL_SECONDS,
        batch: int = TAIL_BATCH,
        reload_seconds: float = GROUP_REFRESH_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.engine = engine
        self.announcer = announcer
        self.eventlog = eventlog
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.reload_seconds = reload_seconds
        self.last_seen = 0
        self.listening = False  # the LISTEN connection is up
        self.reads = 0  # reads done (for tests and the log)
        self._clock = clock
        self._caught_up_at: float | None = None
        self._reloaded_at = float("-inf")
        self._task: asyncio.Task[None] | None = None

    # --- start and stop ---------------------------------------------------------------

    async def start(self) -> None:
        """Take the log's newest id and the directory (one snapshot), then tail in a task."""
        position, snapshot = await asyncio.to_thread(self._start_blocking)
        self.last_seen = position
        self.announcer.advance(position)
        self.announcer.reload(snapshot)
        self._reloaded_at = self._clock()
        self._task = asyncio.create_task(self.run(), name="event-tail")
        logger.info("Event tail started last_seen=%d", position)

    def _start_blocking(self) -> tuple[int, DirectorySnapshot]:
        with self._snapshot() as session:
            return self.eventlog.newest_in(session), load_directory(session)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.listening = False

    # --- health ---------------------------------------------------------------------------

    def lag_seconds(self) -> float:
        """Seconds since the tail last had read everything in the log (0 before a read)."""
        if self._caught_up_at is None:
            return 0.0
        return max(0.0, self._clock() - self._caught_up_at)

    def status(self) -> str:
        """`ok`; `disconnected` while LISTEN is down; `behind` when the tail has not been
        caught up within `TAIL_STALE_SECONDS` (or not yet since it started)."""
        if not self.listening:
            return "disconnected"
        if self._caught_up_at is None or self.lag_seconds() > TAIL_STALE_SECONDS:
            return "behind"
        return "ok"

    def healthy(self) -> bool:
        return self.status() == "ok"

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Listen, read, hand over; reconnect with backoff whenever something fails."""
        delay = TAIL_RECONNECT_MIN_SECONDS
        while True:
            try:
                async with await self._connect() as connection:
                    await connection.execute(f"LISTEN {EVENTS_CHANNEL}")
                    self.listening = True
                    delay = TAIL_RECONNECT_MIN_SECONDS
                    logger.info("Event tail listening channel=%s", EVENTS_CHANNEL)
                    # Whatever committed while nobody listened, and the directory with it.
                    await self.catch_up(reload=True)
                    await self._listen(connection)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server went away, a read failed: start over
                self.listening = False
                logger.warning(
                    "Event tail interrupted reason=%s last_seen=%d retry_in_s=%.1f",
                    type(exc).__name__,
                    self.last_seen,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, TAIL_RECONNECT_MAX_SECONDS)

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        return await psycopg.AsyncConnection.connect(
            listen_conninfo(self.engine),
            autocommit=True,
            connect_timeout=POSTGRES_CONNECT_TIMEOUT_SECONDS,
            # A peer that vanished without closing the connection is noticed within ~20 s.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=2,
        )

    async def _listen(self, connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        while True:
            received, wake, reload = False, False, False
            async for notify in connection.notifies(timeout=self.poll_seconds, stop_after=1):
                received = True
                if notify.payload == DIRECTORY_CHANGED:
                    reload = True
                elif not notify.payload.isdecimal() or int(notify.payload) > self.last_seen:
                    wake = True
            if not received:
                wake = True  # no notification for a poll interval: read anyway
            if reload or self._clock() - self._reloaded_at >= self.reload_seconds:
                await self.catch_up(reload=True)
            elif wake:
                await self.catch_up()

    async def catch_up(self, *, reload: bool = False) -> None:
        """Read and hand over until a read comes back short (the tail is caught up).

        With `reload`, the last read also takes the directory, in the same snapshot, and
        the announcer applies it after that read's rows.
        """
        while True:
            batch = await asyncio.to_thread(self.read_blocking, self.last_seen, reload)
            self.reads += 1
            await self.hand_over(batch)
            if not batch.rows.full:
                return

    def read_blocking(self, after_id: int, reload: bool) -> Batch:
        """One read in one snapshot (worker thread): rows after the id, maybe the directory."""
        with self._snapshot() as session:
            rows = rows_after(session, after_id, self.batch)
            directory = load_directory(session) if reload and not rows.full else None
        return Batch(rows, directory)

    async def hand_over(self, batch: Batch) -> None:
        """On the loop: each row newer than `last_seen` once, in id order; then the
        directory, if the batch carries one. A batch that is not full means caught up."""
        for item in batch.rows.items:
            if item.id <= self.last_seen:
                continue
            if isinstance(item, StaffChange):
                if item.phase == "gain":
                    self.announcer.gain(item.groups)
                else:
                    self.announcer.settle(item.groups)
            else:
                await self.announcer.publish(item)
            self.last_seen = item.id
        if batch.rows.last_id is not None and batch.rows.last_id > self.last_seen:
            self.last_seen = batch.rows.last_id  # rows of a type this version skips
        self.announcer.advance(self.last_seen)
        if batch.directory is not None:
            self.announcer.reload(batch.directory)
            self._reloaded_at = self._clock()
        if not batch.rows.full:
            self._caught_up_at = self._clock()

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Session]:
        """A read-only session whose statements all see one snapshot."""
        with Session(self.engine) as session:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session
            session.rollback()


def register_tail_metrics(registry: CollectorRegistry, tail: EventTail) -> None:
    """`edge_event_tail_lag_seconds` and `edge_event_tail_connected`, read at scrape time."""
    lag = Gauge(
        "edge_event_tail_lag_seconds",
        "Seconds since the event-log tail last had read everything in the log",
        registry=registry,
    )
    lag.set_function(tail.lag_seconds)
    connected = Gauge(
        "edge_event_tail_connected",
        "1 while the event-log tail's LISTEN connection is up",
        registry=registry,
    )
    connected.set_function(lambda: 1.0 if tail.listening else 0.0)
