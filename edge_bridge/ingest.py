"""MQTT ingestion: the worker that turns the messages `MqttClient` hands over into effects.

Flow per batch: validate → one write transaction for all valid scans (the store publishes
their events after the commit) → feedback to each reader → acknowledge to the broker. A crash
anywhere before the acknowledgement means the broker redelivers, and `(device_id, scan_id)`
idempotency turns the redelivery into a repeat of the stored feedback.

Failures are sorted by what they say:
- about one message (garbage, an unknown device, a scan that fails on its own, a bug met by
  one payload): that message is answered `rejected`, acknowledged, counted and logged; the
  rest of the batch goes on;
- about the database (connection lost, locked, serialization failure: `is_transient_error`):
  nothing is answered or acknowledged, the database counts as unreachable (`/ready` says
  so), and the batch is retried with capped exponential backoff until it goes through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from edge_bridge.config import Settings
from edge_bridge.dberrors import is_transient_error
from edge_bridge.logthrottle import LogThrottle
from edge_bridge.metrics import Metrics
from edge_bridge.models import Device, utcnow
from edge_bridge.mqtt_client import Inbound, MqttClient
from edge_bridge.presence import Presence
from edge_bridge.scans import MESSAGES, Scan, record_scans, within_skew
from edge_bridge.store import Store, Tx
from edge_bridge.tuning import (
    INGEST_MAX_BATCH,
    INGEST_RETRY_MAX_SECONDS,
    INGEST_RETRY_MIN_SECONDS,
    INGEST_STOP_TIMEOUT_SECONDS,
)
from edge_bridge.visits import Outcome
from edge_bridge.wire import (
    Rejection,
    ScanPayload,
    ScanResult,
    StatusPayload,
    feedback_payload,
    parse_scan,
)

logger = logging.getLogger(__name__)


def is_unique_violation(error: BaseException) -> bool:
    """A unique or primary-key constraint refused a row (SQLSTATE 23505, SQLite UNIQUE)."""
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) == "23505":
        return True
    return isinstance(error, IntegrityError) and "UNIQUE constraint failed" in str(orig)


def _school_of(device: Device | None) -> int | None:
    """A known reader's school (the label of its scans); None for an unknown reader."""
    return None if device is None else device.school_id


@dataclass(slots=True)
class _Pending:
    """A valid scan waiting for its transaction."""

    inbound: Inbound
    scan: Scan
    school_id: int  # the reader's school: its tag lookups and its metric label
    outcome: Outcome | None = None


class Ingest:
    """The bridge's MQTT client and the worker that turns scans into effects."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        presence: Presence,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.presence = presence
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.throttle = LogThrottle(logger)
        self.mqtt = MqttClient(settings, metrics=self.metrics, throttle=self.throttle)
        self.topics = self.mqtt.topics
        self.connected = self.mqtt.connected
        self._worker: asyncio.Task[None] | None = None
        self._accepting = True
        self._stopping = asyncio.Event()
        self._busy = False  # the worker holds a batch between taking it and acknowledging it
        self._database_down_since: float | None = None

    # --- lifecycle ---

    async def start(self) -> None:
        self.mqtt.start(asyncio.get_running_loop())
        self._worker = asyncio.create_task(self._run(), name="ingest-worker")
        endpoint = self.settings.mqtt
        logger.info(
            "MQTT ingest started broker=%s:%s client_id=%s prefix=%s",
            endpoint.host,
            endpoint.port,
            self.settings.mqtt_client_id,
            self.topics.prefix,
        )

    async def stop(self, *, timeout_seconds: float = INGEST_STOP_TIMEOUT_SECONDS) -> None:
        """Stop taking scans, finish the batch in flight, say offline, disconnect."""
        self._accepting = False
        self._stopping.set()  # a batch waiting out a database outage stays unacknowledged
        if self._worker is not None:
            if not self._busy:
                self._worker.cancel()  # waiting for a message: nothing in flight
            try:
                async with asyncio.timeout(timeout_seconds):
                    await asyncio.gather(self._worker, return_exceptions=True)
            except TimeoutError:
                self._worker.cancel()
                logger.warning("MQTT ingest worker did not finish its batch in time")
        await self.mqtt.stop()
        logger.info("MQTT ingest stopped")

    def healthy(self) -> bool:
        """Connected, the MQTT driver alive, and the worker running."""
        worker_ok = self._worker is not None and not self._worker.done()
        return self.mqtt.healthy() and worker_ok

    @property
    def database_unreachable(self) -> bool:
        """True from a transient database error until the retried batch goes through."""
        return self._database_down_since is not None

    # --- the worker, on the event loop ---

    async def _run(self) -> None:
        # After stop() the worker finishes the batch in hand and leaves the rest
        # unacknowledged in the queue: the broker redelivers it to the next session.
        while self._accepting:
            self._busy = False
            batch = await self.mqtt.next_batch(INGEST_MAX_BATCH)
            self._busy = True
            await self._process_until_done(batch)

    async def _process_until_done(self, batch: list[Inbound]) -> None:
        """Process the batch; while the database is away, wait and retry what is unanswered."""
        delay = INGEST_RETRY_MIN_SECONDS
        while True:
            try:
                await self._process([inbound for inbound in batch if not inbound.handled])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient_error(exc):
                    logger.exception(
                        "Scan batch failed size=%d reason=internal_error; rejecting the rest",
                        len(batch),
                    )
                    await self._reject_unhandled(batch, exc)
                    return
                self._database_down(exc, delay)
                if await self._stopped_within(delay):
                    return
                delay = min(delay * 2, INGEST_RETRY_MAX_SECONDS)
                continue
            self._database_up()
            return

    async def _reject_unhandled(self, batch: list[Inbound], exc: Exception) -> None:
        """Last resort for a failure about neither one message nor the database (a bug): each
        message not yet dealt with is refused as `internal_error`, answered to a known reader,
        counted and acknowledged, so none holds an in-flight slot until the next reconnect.
        One that fails even here is still acknowledged."""
        for inbound in batch:
            if inbound.handled:
                continue
            try:
                await self._reject_internal(inbound, exc)
            except Exception:
                logger.exception("Message acknowledged unanswered reason=internal_error")
            if not inbound.handled:
                self.mqtt.ack(inbound)

    async def _reject_internal(self, inbound: Inbound, exc: Exception) -> None:
        parsed = self.topics.parse_reader_topic(inbound.topic)
        device_id, kind = parsed if parsed else ("", "")
        if kind != "scan":
            await self._contain(inbound, exc)  # logged and acknowledged
            return
        scan_id = None if inbound.oversize else parse_scan(inbound.payload).scan_id
        try:
            device = await self.presence.device(device_id)
        except Exception:  # the directory cannot say: acknowledge without an answer
            device = None
        rejection = Rejection("internal_error", scan_id=scan_id)
        self._reject(device_id, inbound, rejection, school_id=_school_of(device))

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return False
        return True

    def _database_down(self, exc: Exception, delay: float) -> None:
        self.metrics.scan_retries.inc()
        if self._database_down_since is None:
            self._database_down_since = time.monotonic()
            error = getattr(exc, "orig", None) or exc
            logger.warning(
                "Database unavailable, scans wait unacknowledged error=%s retry_in_s=%.1f",
                type(error).__name__,
                delay,
            )

    def _database_up(self) -> None:
        if self._database_down_since is not None:
            seconds = time.monotonic() - self._database_down_since
            self._database_down_since = None
            logger.info("Database available again after_s=%.1f; scans resume", seconds)

    async def _process(self, batch: list[Inbound]) -> None:
        """Answer each message; a failure that is about one message stays with it."""
        pending: list[_Pending] = []
        for inbound in batch:
            try:
                item = await self._take(inbound)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient_error(exc):
                    raise
                await self._contain(inbound, exc)
                continue
            if item is not None:
                pending.append(item)
        if pending:
            await self._commit(pending)

    async def _take(self, inbound: Inbound) -> _Pending | None:
        """A valid scan to commit, or None when the message is already dealt with."""
        parsed = self.topics.parse_reader_topic(inbound.topic)
        if parsed is None:
            self.mqtt.ack(inbound)
            return None
        device_id, kind = parsed
        if kind == "scan":
            return await self._validate(device_id, inbound)
        if kind == "status":
            await self._handle_status(device_id, inbound)
        else:
            self.mqtt.ack(inbound)
        return None

    async def _contain(self, inbound: Inbound, exc: Exception) -> None:
        """An unexpected failure while handling one message: refuse that message only."""
        parsed = self.topics.parse_reader_topic(inbound.topic)
        device_id, kind = parsed if parsed else ("", "")
        if kind != "scan":
            self.throttle.warning(
                (device_id, "internal_error"),
                "Message ignored device_id=%s reason=internal_error",
                device_id,
                exc_info=exc,
            )
            self.mqtt.ack(inbound)
            return
        try:
            device = await self.presence.device(device_id)
        except Exception as lookup_error:
            if is_transient_error(lookup_error):
                raise
            device = None
        rejection = Rejection("internal_error")
        self._reject(device_id, inbound, rejection, school_id=_school_of(device), exc=exc)

    async def _handle_status(self, device_id: str, inbound: Inbound) -> None:
        try:
            status = StatusPayload.model_validate_json(inbound.payload)
        except ValidationError:
            self.throttle.warning(
                (device_id, "status_invalid"),
                "Reader status ignored device_id=%s reason=invalid_payload",
                device_id,
            )
        else:
            await self.presence.update(
                device_id, online=status.online, firmware=status.firmware, at=inbound.received_at
            )
        self.mqtt.ack(inbound)

    async def _validate(self, device_id: str, inbound: Inbound) -> _Pending | None:
        device = await self.presence.device(device_id)
        parsed = Rejection("oversize") if inbound.oversize else parse_scan(inbound.payload)
        if device is None or not device.active:
            reason = "unknown_device" if device is None else "inactive_device"
            parsed = Rejection(reason, scan_id=parsed.scan_id)
        if isinstance(parsed, ScanPayload):
            scan = Scan(device_id, parsed.scan_id, parsed.tag, parsed.ts, inbound.received_at)
            if not within_skew(scan):
                self.metrics.scan_clock_skew.inc()
            assert device is not None  # an unknown device's scan is a Rejection
            return _Pending(inbound, scan, device.school_id)
        self._reject(device_id, inbound, parsed, school_id=_school_of(device))
        return None

    def _reject(
        self,
        device_id: str,
        inbound: Inbound,
        rejection: Rejection,
        *,
        school_id: int | None,
        exc: Exception | None = None,
    ) -> None:
        """No effect: counted, logged (rate-limited), `rejected` to a known reader, acked.

        `school_id` is the known reader's school; None for an unknown reader, which gets
        no answer and is counted only among the rejections (it has no school).
        """
        self.metrics.scan_rejections.labels(rejection.reason).inc()
        self.throttle.warning(
            (device_id, rejection.reason),
            "Scan rejected device_id=%s reason=%s",
            device_id,
            rejection,
            exc_info=exc,
        )
        if school_id is not None:
            self.metrics.count_scans(str(ScanResult.REJECTED), school_id)
            self._answer(device_id, rejection.scan_id or "", ScanResult.REJECTED)
        self.mqtt.ack(inbound)

    async def _commit(self, pending: list[_Pending], *, raced: bool = False) -> None:
        try:
            await self.store.write(lambda tx: self._record(tx, pending))
        except Exception as exc:
            if is_transient_error(exc):
                raise  # about the database, not these scans: the whole batch waits
            if is_unique_violation(exc) and not raced:
                # Most likely another instance committed the same scan or an open visit of
                # the same student first: the retry is a new transaction that reads it.
                logger.info("Scan batch raced another writer size=%d; retrying", len(pending))
                await self._commit(pending, raced=True)
                return
            if len(pending) == 1:
                self._give_up(pending[0])
                return
            logger.exception("Scan batch failed size=%d; retrying one by one", len(pending))
            for item in pending:
                await self._commit([item])
            return
        self._finish(pending)

    def _record(self, tx: Tx, pending: list[_Pending]) -> None:
        device_ids = {item.scan.device_id for item in pending}
        devices = {
            d.id: d for d in tx.session.exec(select(Device).where(col(Device.id).in_(device_ids)))
        }
        items = [(item.scan, devices[item.scan.device_id]) for item in pending]
        outcomes = record_scans(tx, items, debounce_seconds=self.settings.scan_debounce_seconds)
        for item, outcome in zip(pending, outcomes, strict=True):
            item.outcome = outcome

    def _finish(self, pending: list[_Pending]) -> None:
        """After the commit: count, answer and acknowledge each scan."""
        done = time.perf_counter()
        self.metrics.batch_size.observe(len(pending))
        results: Counter[tuple[ScanResult, int]] = Counter()
        observe = self.metrics.scan_to_broadcast.observe
        seen: dict[str, datetime] = {}
        for item in pending:
            outcome = item.outcome
            assert outcome is not None
            results[outcome.result, item.school_id] += 1
            observe(done - item.inbound.received)
            seen[item.scan.device_id] = item.inbound.received_at
            self._answer(
                item.scan.device_id,
                item.scan.scan_id,
                outcome.result,
                outcome.message,
                outcome.student_name,
            )
            self.mqtt.ack(item.inbound)
        for (result, school_id), count in results.items():
            self.metrics.count_scans(str(result), school_id, count)
        for device_id, at in seen.items():
            self.presence.seen(device_id, at)

    def _give_up(self, item: _Pending) -> None:
        """A scan that fails on its own would fail forever: answer `rejected`, do not loop."""
        logger.exception(
            "Scan failed device_id=%s scan_id=%s reason=internal_error",
            item.scan.device_id,
            item.scan.scan_id,
        )
        self.metrics.scan_rejections.labels("internal_error").inc()
        self.metrics.count_scans(str(ScanResult.REJECTED), item.school_id)
        self._answer(item.scan.device_id, item.scan.scan_id, ScanResult.REJECTED)
        self.mqtt.ack(item.inbound)

    def _answer(
        self,
        device_id: str,
        scan_id: str,
        result: ScanResult,
        message: str | None = None,
        student_name: str | None = None,
    ) -> None:
        """Feedback to the reader: outcomes, rejections and give-ups all go through here."""
        if result is ScanResult.REJECTED:
            self.presence.rejected(device_id)
        text = MESSAGES[result] if message is None else message
        payload = feedback_payload(scan_id, result, text, student_name)
        self.mqtt.publish(self.topics.feedback(device_id), payload)
