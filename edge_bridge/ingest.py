"""MQTT ingestion: paho's network thread hands messages to the loop; scans become visits.

Flow per batch: validate → one write transaction for all valid scans (the store publishes
their events after the commit) → feedback to each reader → acknowledge to the broker. A crash
anywhere before the acknowledgement means the broker redelivers, and `(device_id, scan_id)`
idempotency turns the redelivery into a repeat of the stored feedback.

paho pitfalls handled here: the session must outlive a restart (MQTT v5 session expiry, clean
start off), and an exception escaping a callback kills the network thread silently, so every
callback catches everything and `healthy()` checks that the thread is alive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError
from sqlmodel import select

from edge_bridge.config import Settings
from edge_bridge.metrics import Metrics
from edge_bridge.models import Device, utcnow
from edge_bridge.presence import Presence
from edge_bridge.scans import MESSAGES, Scan, record_scans, within_skew
from edge_bridge.store import Store, Tx
from edge_bridge.tuning import (
    INGEST_MAX_BATCH,
    INGEST_STOP_TIMEOUT_SECONDS,
    MQTT_KEEPALIVE_SECONDS,
    MQTT_RECEIVE_MAXIMUM,
    MQTT_RECONNECT_MAX_SECONDS,
    MQTT_RECONNECT_MIN_SECONDS,
    MQTT_SESSION_EXPIRY_SECONDS,
)
from edge_bridge.visits import Outcome
from edge_bridge.wire import (
    MAX_PAYLOAD_BYTES,
    FeedbackPayload,
    ScanPayload,
    ScanResult,
    StatusPayload,
    Topics,
)

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Inbound:
    """A message as handed over by the network thread."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received: float
    received_at: datetime
    connection: int  # which connection it came on: acks only go back on that one


@dataclass(slots=True)
class _Pending:
    """A valid scan waiting for its transaction."""

    inbound: Inbound
    scan: Scan
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
        self.topics = Topics(settings.mqtt_topic_prefix)
        self.connected = threading.Event()
        self._queue: asyncio.Queue[Inbound] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self._client = self._make_client()
        self._accepting = True
        self._connection = 0
        self._busy = False  # the worker holds a batch between taking it and acknowledging it

    # --- lifecycle ---

    def _make_client(self) -> mqtt.Client:
        endpoint = self.settings.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if endpoint.username:
            client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            client.tls_set(ca_certs=self.settings.mqtt_ca_file)
        client.will_set(self.topics.bridge_status, b'{"online":false}', qos=1, retain=True)
        client.reconnect_delay_set(
            min_delay=MQTT_RECONNECT_MIN_SECONDS, max_delay=MQTT_RECONNECT_MAX_SECONDS
        )
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        endpoint = self.settings.mqtt
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = MQTT_SESSION_EXPIRY_SECONDS
        properties.ReceiveMaximum = MQTT_RECEIVE_MAXIMUM
        self._client.connect_async(
            endpoint.host,
            endpoint.port,
            keepalive=MQTT_KEEPALIVE_SECONDS,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()
        self._worker = asyncio.create_task(self._run(), name="ingest-worker")
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
        if self._worker is not None:
            if not self._busy:
                self._worker.cancel()  # waiting for a message: nothing in flight
            try:
                async with asyncio.timeout(timeout_seconds):
                    await asyncio.gather(self._worker, return_exceptions=True)
            except TimeoutError:
                self._worker.cancel()
                logger.warning("MQTT ingest worker did not finish its batch in time")
        try:
            if self.connected.is_set():
                info = self._client.publish(
                    self.topics.bridge_status, b'{"online":false}', qos=1, retain=True
                )
                await asyncio.to_thread(info.wait_for_publish, 1.0)
        except (RuntimeError, ValueError) as exc:
            logger.info("Bridge offline status not sent reason=%s", exc)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        logger.info("MQTT ingest stopped")

    def healthy(self) -> bool:
        """Connected, the network thread alive, and the worker running."""
        thread = getattr(self._client, "_thread", None)
        worker_ok = self._worker is not None and not self._worker.done()
        return self.connected.is_set() and thread is not None and thread.is_alive() and worker_ok

    # --- paho callbacks: they run on paho's network thread and must never raise ---

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: object,
        reason_code: object,
        _properties: object,
    ) -> None:
        try:
            if getattr(reason_code, "is_failure", False):
                logger.warning("MQTT connect refused reason=%s", reason_code)
                return
            self._connection += 1
            client.subscribe([(self.topics.all_scans, 1), (self.topics.all_statuses, 1)])
            client.publish(self.topics.bridge_status, b'{"online":true}', qos=1, retain=True)
            self.connected.set()
            logger.info(
                "MQTT connected session_present=%s",
                getattr(flags, "session_present", "?"),
            )
        except Exception:
            logger.exception("MQTT on_connect failed")

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason_code: object,
        _properties: object,
    ) -> None:
        try:
            self.connected.clear()
            logger.warning("MQTT disconnected reason=%s (paho reconnects)", reason_code)
        except Exception:
            logger.exception("MQTT on_disconnect failed")

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        # paho-mqtt calls this from its network thread: hand over to the loop, nothing else.
        try:
            inbound = Inbound(
                message.topic,
                bytes(message.payload),
                message.mid,
                message.qos,
                time.perf_counter(),
                utcnow(),
                self._connection,
            )
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._queue.put_nowait, inbound)
        except Exception:
            logger.exception("MQTT message hand-over failed topic=%s", message.topic)

    # --- the worker, on the event loop ---

    async def _run(self) -> None:
        # After stop() the worker finishes the batch in hand and leaves the rest
        # unacknowledged in the queue: the broker redelivers it to the next session.
        while self._accepting:
            self._busy = False
            batch = [await self._queue.get()]
            self._busy = True
            while len(batch) < INGEST_MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._process(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Not acknowledged: the broker redelivers these after a reconnect.
                logger.exception("Scan batch failed size=%d; left unacknowledged", len(batch))

    async def _process(self, batch: list[Inbound]) -> None:
        pending: list[_Pending] = []
        for inbound in batch:
            parsed = self.topics.parse_reader_topic(inbound.topic)
            if parsed is None:
                self._ack(inbound)
                continue
            device_id, kind = parsed
            if kind == "status":
                await self._handle_status(device_id, inbound)
            elif kind == "scan":
                item = await self._validate(device_id, inbound)
                if item is not None:
                    pending.append(item)
            else:
                self._ack(inbound)
        if pending:
            await self._commit(pending)

    async def _handle_status(self, device_id: str, inbound: Inbound) -> None:
        try:
            status = StatusPayload.model_validate_json(inbound.payload)
        except ValidationError:
            logger.warning("Reader status ignored device_id=%s reason=invalid_payload", device_id)
        else:
            await self.presence.update(
                device_id, online=status.online, firmware=status.firmware, at=inbound.received_at
            )
        self._ack(inbound)

    async def _validate(self, device_id: str, inbound: Inbound) -> _Pending | None:
        device = await self.presence.device(device_id)
        parsed = parse_scan(inbound.payload, device)
        if isinstance(parsed, ScanPayload):
            scan = Scan(device_id, parsed.scan_id, parsed.tag, parsed.ts, inbound.received_at)
            if not within_skew(scan):
                self.metrics.scan_clock_skew.inc()
            return _Pending(inbound, scan)
        self.metrics.scan_rejections.labels(parsed.reason).inc()
        logger.warning("Scan rejected device_id=%s reason=%s", device_id, parsed)
        if device is not None:
            self.metrics.scans.labels(str(ScanResult.REJECTED)).inc()
            feedback = FeedbackPayload(
                scan_id=parsed.scan_id or "",
                result=ScanResult.REJECTED,
                message=MESSAGES[ScanResult.REJECTED],
            )
            self._send_feedback(device_id, feedback)
        self._ack(inbound)
        return None

    async def _commit(self, pending: list[_Pending]) -> None:
        try:
            await self.store.write(lambda tx: self._record(tx, pending))
        except Exception:
            if len(pending) == 1:
                self._give_up(pending[0])
                return
            logger.exception("Scan batch failed size=%d; retrying one by one", len(pending))
            for item in pending:
                await self._commit([item])
            return
        done = time.perf_counter()
        self.metrics.batch_size.observe(len(pending))
        for item in pending:
            assert item.outcome is not None
            self.metrics.scans.labels(str(item.outcome.result)).inc()
            self.metrics.scan_to_broadcast.observe(done - item.inbound.received)
            self.presence.seen(item.scan.device_id, item.inbound.received_at)
            feedback = FeedbackPayload(
                scan_id=item.scan.scan_id,
                result=item.outcome.result,
                message=item.outcome.message,
                student_name=item.outcome.student_name,
            )
            self._send_feedback(item.scan.device_id, feedback)
            self._ack(item.inbound)

    def _record(self, tx: Tx, pending: list[_Pending]) -> None:
        devices = {d.id: d for d in tx.session.exec(select(Device)).all()}
        items = [(item.scan, devices[item.scan.device_id]) for item in pending]
        outcomes = record_scans(tx, items, debounce_seconds=self.settings.scan_debounce_seconds)
        for item, outcome in zip(pending, outcomes, strict=True):
            item.outcome = outcome

    def _give_up(self, item: _Pending) -> None:
        """A scan that fails on its own would fail forever: answer `rejected`, do not loop."""
        logger.exception(
            "Scan failed device_id=%s scan_id=%s reason=internal_error",
            item.scan.device_id,
            item.scan.scan_id,
        )
        self.metrics.scan_rejections.labels("internal_error").inc()
        feedback = FeedbackPayload(
            scan_id=item.scan.scan_id,
            result=ScanResult.REJECTED,
            message=MESSAGES[ScanResult.REJECTED],
        )
        self._send_feedback(item.scan.device_id, feedback)
        self._ack(item.inbound)

    def _send_feedback(self, device_id: str, feedback: FeedbackPayload) -> None:
        payload = feedback.model_dump_json(exclude_none=True).encode()
        self._client.publish(self.topics.feedback(device_id), payload, qos=1)

    def _ack(self, inbound: Inbound) -> None:
        """Acknowledge on the connection the message came on; after a reconnect its message id
        may belong to another, uncommitted scan, and the broker redelivers this one anyway."""
        if inbound.qos > 0 and inbound.connection == self._connection:
            self._client.ack(inbound.mid, inbound.qos)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a scan payload was refused before any effect."""

    reason: str
    field: str | None = None
    scan_id: str | None = None

    def __str__(self) -> str:
        return self.reason if self.field is None else f"{self.reason} field={self.field}"


def parse_scan(payload: bytes, device: Device | None) -> ScanPayload | Rejection:
    """The validated scan, or why it is refused (with its scan_id when readable)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection("oversize")
    try:
        document = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return Rejection("not_json")
    raw_id = document.get("scan_id") if isinstance(document, dict) else None
    scan_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= 64 else None
    if device is None:
        return Rejection("unknown_device", scan_id=scan_id)
    if not device.active:
        return Rejection("inactive_device", scan_id=scan_id)
    try:
        return ScanPayload.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "payload"
        if field == "tag":
            reason = "bad_tag"
        elif first["type"] == "missing":
            reason = "missing_field"
        else:
            reason = "invalid_field"
        return Rejection(reason, field, scan_id)
