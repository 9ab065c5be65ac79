"""One emulated RFID reader: its own paho MQTT client, behaving like careful firmware.

- logs in with client id = username = device id and keeps a persistent session, so feedback
  sent while it was briefly away still arrives;
- Last Will `{"online": false}` retained on its status topic; `{"online": true, …}` retained
  on every connect;
- keeps every scan until the feedback with its `scan_id` arrives and re-publishes it (same
  `scan_id`, same `ts`) after `resend_after_seconds`, at most `max_resends` times;
- while offline it buffers scans (oldest dropped when full) and publishes them in order, with
  their original `ts`, once it is back.

Two locks: `_send_lock` keeps publishes in scan order, `_lock` guards the bookkeeping. paho's
calls happen outside `_lock`, and its callbacks never wait for `_send_lock` except `on_connect`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from edge_bridge.wire import FeedbackPayload, ScanResult, format_ts
from simulator.broker import BrokerConfig

FIRMWARE = "sim-1.0"
_DISCONNECT_WITH_WILL = 0x04  # MQTT v5 reason code: "Disconnect with Will Message"

module_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReaderOptions:
    """How patient and how forgetful a reader is."""

    resend_after_seconds: float = 5.0
    max_resends: int = 3
    buffer_size: int = 100
    firmware: str = FIRMWARE


@dataclass(frozen=True)
class Feedback:
    """The bridge's answer to one of this reader's scans."""

    device_id: str
    scan_id: str
    result: ScanResult
    message: str
    student_name: str | None
    latency_seconds: float | None  # first publish → feedback
    resends: int


@dataclass(frozen=True)
class ReaderStats:
    """Counters of one reader; `pending` + `buffered` are the unacknowledged scans."""

    scanned: int
    published: int
    resends: int
    acked: int
    pending: int
    buffered: int
    dropped: int


@dataclass
class _Scan:
    scan_id: str
    payload: bytes
    first_sent_at: float | None = None
    last_sent_at: float | None = None
    resends: int = 0
    gave_up: bool = False


class Reader:
    """An emulated reader; `scan()` is safe to call from any thread, online or offline."""

    def __init__(
        self,
        device_id: str,
        broker: BrokerConfig,
        *,
        options: ReaderOptions | None = None,
        on_feedback: Callable[[Feedback], None] | None = None,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.device_id = device_id
        self.broker = broker
        self.options = options or ReaderOptions()
        self._on_feedback = on_feedback
        self._clock = clock
        self._log = logger or module_logger
        topics = broker.topics
        self._scan_topic = topics.scan(device_id)
        self._feedback_topic = topics.feedback(device_id)
        self._status_topic = topics.status(device_id)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._connected_event = threading.Event()
        self._connected = False
        self._wanted_online = False
        self._pending: dict[str, _Scan] = {}
        self._buffer: deque[_Scan] = deque()
        self._counts = {"scanned": 0, "published": 0, "resends": 0, "acked": 0, "dropped": 0}
        self._client = client if client is not None else self._make_client()
        self._configure(self._client)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; scans made before the connection is up are buffered."""
        self.go_online()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected_event.wait(timeout)

    def go_online(self) -> None:
        """(Re)connect with the persistent session; buffered scans follow on connect."""
        with self._lock:
            if self._wanted_online:
                return
            self._wanted_online = True
        if self.broker.mqtt_version == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.broker.session_expiry_seconds
            self._client.connect_async(
                self.broker.host,
                self.broker.port,
                self.broker.keepalive_seconds,
                clean_start=False,
                properties=props,
            )
        else:
            self._client.connect_async(
                self.broker.host, self.broker.port, self.broker.keepalive_seconds
            )
        self._client.loop_start()

    def go_offline(self) -> None:
        """Drop the connection as if the WLAN went away: the broker publishes the Last Will
        (MQTT v5 reason code 0x04; with 3.1.1 the reader says `online: false` itself)."""
        with self._lock:
            if not self._wanted_online:
                return
            self._wanted_online = False
            was_connected, self._connected = self._connected, False
            self._connected_event.clear()
        if self.broker.mqtt_version == 5:
            self._client.disconnect(
                reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=_DISCONNECT_WITH_WILL)
            )
        else:
            if was_connected:
                self._publish_status(online=False)
            self._client.disconnect()
        self._client.loop_stop()
        self._log.info("Reader went offline device_id=%s", self.device_id)

    def expect_stop(self) -> None:
        """From now on a lost connection is part of switching off: no warning, no reconnect
        flush. A fleet calls it on every reader first, as the broker may be going down too."""
        with self._lock:
            self._wanted_online = False

    def stop(self, *, timeout: float = 2.0) -> None:
        """Switch off cleanly: retained `online: false`, disconnect, stop the network thread."""
        with self._lock:
            was_connected, self._connected = self._connected, False
            self._wanted_online = False
            self._connected_event.clear()
        if was_connected:
            info = self._publish_status(online=False)
            try:
                if info is not None:
                    info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:  # the connection dropped meanwhile
                self._log.info(
                    "Offline status not sent device_id=%s reason=%s", self.device_id, exc
                )
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def is_connected(self) -> bool:
        with self._lock:
            return self._connected

    # ---- scans -----------------------------------------------------------------------------

    def scan(self, tag: str, *, ts: datetime | None = None, scan_id: str | None = None) -> str:
        """Read a card now (or at `ts`); publish it, or buffer it while offline."""
        scan_id = scan_id or uuid.uuid4().hex
        moment = ts or datetime.now(UTC)
        body = {"scan_id": scan_id, "tag": tag, "ts": format_ts(moment)}
        scan = _Scan(scan_id=scan_id, payload=json.dumps(body).encode())
        with self._send_lock:
            with self._lock:
                self._counts["scanned"] += 1
                if not self._connected:
                    self._buffer_locked(scan)
                    return scan_id
                self._pending[scan_id] = scan
            self._publish_scan(scan)
        return scan_id

    def resend_overdue(self) -> int:
        """Re-publish every scan whose feedback is overdue; returns how many were sent."""
        now = self._clock()
        due: list[_Scan] = []
        with self._send_lock:
            with self._lock:
                if not self._connected:
                    return 0
                for scan in self._pending.values():
                    if scan.gave_up or scan.last_sent_at is None:
                        continue
                    if now - scan.last_sent_at < self.options.resend_after_seconds:
                        continue
                    if scan.resends >= self.options.max_resends:
                        scan.gave_up = True
                        self._log.warning(
                            "No feedback, giving up resending device_id=%s scan_id=%s resends=%d",
                            self.device_id,
                            scan.scan_id,
                            scan.resends,
                        )
                        continue
                    scan.resends += 1
                    self._counts["resends"] += 1
                    due.append(scan)
            for scan in due:
                self._log.info(
                    "No feedback yet, resending device_id=%s scan_id=%s attempt=%d",
                    self.device_id,
                    scan.scan_id,
                    scan.resends,
                )
                self._publish_scan(scan)
        return len(due)

    def unacknowledged(self) -> list[str]:
        """scan ids still waiting for feedback, published ones first, then buffered ones."""
        with self._lock:
            return [*self._pending, *(s.scan_id for s in self._buffer)]

    def stats(self) -> ReaderStats:
        with self._lock:
            return ReaderStats(
                **self._counts, pending=len(self._pending), buffered=len(self._buffer)
            )

    # ---- paho side -------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        if self.broker.mqtt_version == 5:
            return mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5
            )
        return mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )

    def _configure(self, client: Any) -> None:
        client.username_pw_set(self.device_id, self.broker.password_for(self.device_id))
        client.will_set(self._status_topic, json.dumps({"online": False}), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        if self.broker.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message

    def _publish_scan(self, scan: _Scan) -> None:
        # Caller holds _send_lock, so scans leave in the order they were read.
        now = self._clock()
        with self._lock:
            if scan.first_sent_at is None:
                scan.first_sent_at = now
                self._counts["published"] += 1
            scan.last_sent_at = now
        self._client.publish(self._scan_topic, scan.payload, qos=1)

    def _publish_status(self, *, online: bool) -> Any:
        body: dict[str, Any] = {"online": online, "ts": format_ts(datetime.now(UTC))}
        if online:
            body["firmware"] = self.options.firmware
        return self._client.publish(self._status_topic, json.dumps(body), qos=1, retain=True)

    def _buffer_locked(self, scan: _Scan) -> None:
        if len(self._buffer) >= self.options.buffer_size:
            dropped = self._buffer.popleft()
            self._counts["dropped"] += 1
            self._log.warning(
                "Offline buffer full, dropping oldest scan device_id=%s scan_id=%s buffer_size=%d",
                self.device_id,
                dropped.scan_id,
                self.options.buffer_size,
            )
        self._buffer.append(scan)

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        # paho-mqtt calls this from its network thread.
        if reason_code.is_failure:
            self._log.warning(
                "Reader connection refused device_id=%s reason=%s", self.device_id, reason_code
            )
            return
        with self._send_lock:
            with self._lock:
                if not self._wanted_online:
                    return
                backlog = list(self._buffer)
                self._buffer.clear()
                now = self._clock()
                for scan in self._pending.values():
                    scan.last_sent_at = now  # give the session's queued feedback a chance
                for scan in backlog:
                    self._pending[scan.scan_id] = scan
            self._publish_status(online=True)
            client.subscribe(self._feedback_topic, qos=1)
            for scan in backlog:
                self._publish_scan(scan)
            with self._lock:
                self._connected = True
        self._connected_event.set()
        self._log.info(
            "Reader online device_id=%s session_present=%s flushed=%d",
            self.device_id,
            getattr(flags, "session_present", None),
            len(backlog),
        )

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        # paho-mqtt calls this from its network thread.
        with self._lock:
            self._connected = False
            wanted = self._wanted_online
        self._connected_event.clear()
        if wanted:
            self._log.warning(
                "Reader lost its connection device_id=%s reason=%s", self.device_id, reason_code
            )

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        # paho-mqtt calls this from its network thread.
        if message.topic != self._feedback_topic:
            return
        try:
            payload = FeedbackPayload.model_validate_json(message.payload)
        except ValidationError as exc:
            self._log.warning(
                "Malformed feedback ignored device_id=%s reason=%s",
                self.device_id,
                exc.errors()[0]["msg"],
            )
            return
        with self._lock:
            scan = self._pending.pop(payload.scan_id, None)
            if scan is not None:
                self._counts["acked"] += 1
        if scan is None:
            self._log.debug(
                "Feedback for no pending scan device_id=%s scan_id=%s",
                self.device_id,
                payload.scan_id,
            )
            return
        latency = None if scan.first_sent_at is None else self._clock() - scan.first_sent_at
        feedback = Feedback(
            device_id=self.device_id,
            scan_id=payload.scan_id,
            result=payload.result,
            message=payload.message,
            student_name=payload.student_name,
            latency_seconds=latency,
            resends=scan.resends,
        )
        if self._on_feedback is not None:
            self._on_feedback(feedback)
