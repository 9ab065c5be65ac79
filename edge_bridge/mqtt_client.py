"""The bridge's MQTT session on the loop: the hand-over into a bounded queue, acks, publish.

paho is driven by the asyncio loop (`mqtt_loop.LoopDriver`: no network thread, so a socket
numbered 1024 or higher is fine), so every callback here runs on the loop.

paho pitfalls handled here: the session must outlive a restart (MQTT v5 session expiry, clean
start off), and an exception escaping a callback leaves paho's parser half-way, so every
callback catches everything (the driver survives one anyway: logged, counted, reconnected);
`healthy()` checks the connection and that the driver runs.

The hand-over queue is bounded by backpressure, not by dropping: when it holds
INGEST_QUEUE_SIZE messages the socket is no longer read (`LoopDriver.pause_reading`) until
the worker has taken it down to the low-water mark. Receive Maximum alone does not bound it:
Mosquitto 2.0 (`db__message_write_queued_out`) moves its whole queue for a client into flight
as soon as one PUBACK frees one slot, so a flat-out burst arrives unacknowledged all at once.
A QoS 1 message that was read is therefore never dropped (it would hold one of the broker's
in-flight slots until the next reconnect); messages already read when the pause starts go in
above the bound. Messages left in the queue from an earlier connection are never acknowledged
(the broker redelivers them on the new one), so at the bound they are forgotten first. QoS 0
statuses use only what Receive Maximum leaves free. QoS 0 scans are dropped in the callback
(scans are QoS 1, CONTRACT §3), and an oversize payload is not copied: a marker goes to the
worker, which refuses it. Bridge status messages are acknowledged as soon as they are handled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_bridge.config import Settings
from edge_bridge.errors import ConfigError
from edge_bridge.logthrottle import LogThrottle
from edge_bridge.metrics import Metrics
from edge_bridge.models import utcnow
from edge_bridge.mqtt_loop import LoopDriver, until
from edge_bridge.tuning import (
    INGEST_LOG_WINDOW_SECONDS,
    INGEST_QUEUE_RESUME_FRACTION,
    MQTT_KEEPALIVE_SECONDS,
    MQTT_RECEIVE_MAXIMUM,
    MQTT_SESSION_EXPIRY_SECONDS,
    MQTT_SHARED_SESSION_EXPIRY_SECONDS,
)
from edge_bridge.wire import MAX_PAYLOAD_BYTES, Topics

logger = logging.getLogger(__name__)
_OFFLINE = b'{"online":false}'
_ONLINE = b'{"online":true}'


_TOPIC_LEVEL = re.compile(r"^[^/+#\s\x00]{1,64}$")


def instance_status_topic(settings: Settings) -> str:
    """`<prefix>/bridge/<INSTANCE_ID>/status`: this instance's own retained presence."""
    return f"{Topics(settings.mqtt_topic_prefix).prefix}/bridge/{settings.instance}/status"


def _offline_of(instance: str) -> bytes:
    return json.dumps({"online": False, "instance": instance}, separators=(",", ":")).encode()


@dataclass(slots=True)
class Inbound:
    """A message as handed over by paho's message callback."""

    topic: str
    payload: bytes  # empty when `oversize`: a payload over the limit is not copied
    mid: int
    qos: int
    received: float
    received_at: datetime
    connection: int  # which connection it came on: acks only go back on that one
    oversize: bool = False
    handled: bool = False  # answered and acknowledged (or deliberately left to the broker)


def queue_bound(settings: Settings) -> int:
    """The hand-over queue's size, where reading pauses: at least Receive Maximum."""
    if settings.ingest_queue_size < MQTT_RECEIVE_MAXIMUM:
        msg = (
            f"INGEST_QUEUE_SIZE must be at least the MQTT Receive Maximum "
            f"({MQTT_RECEIVE_MAXIMUM}), got {settings.ingest_queue_size}"
        )
        raise ConfigError(msg)
    return settings.ingest_queue_size


def scan_filter(settings: Settings) -> str:
    """The scan subscription: shared through `$share/<group>/` when MQTT_SHARED_GROUP is set.

    Statuses stay a plain subscription on every instance: a broker sends no retained
    messages to a shared subscription, and each instance needs every reader's last status.
    """
    topic = Topics(settings.mqtt_topic_prefix).all_scans
    group = settings.mqtt_shared_group
    return f"$share/{group}/{topic}" if group else topic


def session_expiry_seconds(settings: Settings) -> int:
    """How long the broker keeps this instance's session (and queues for it) after a drop.

    Alone, a week: scans wait for the bridge to come back. In a shared group, briefly:
    Mosquitto keeps routing a share of new scans to a disconnected member whose session is
    alive, and never hands its in-flight ones to the others (eclipse-mosquitto #2662), so a
    long session would strand scans at a dead instance until each reader's resend happened
    to pick a live one. With the session gone the group has only live members; scans that
    were in flight at the dead one come back through the readers' resend (CONTRACT §3).
    """
    return (
        MQTT_SHARED_SESSION_EXPIRY_SECONDS
        if settings.mqtt_shared_group
        else (MQTT_SESSION_EXPIRY_SECONDS)
    )


class MqttClient:
    """One persistent MQTT session; received messages land in `queue`, on the loop."""

    def __init__(self, settings: Settings, *, metrics: Metrics, throttle: LogThrottle) -> None:
        self.settings = settings
        self.metrics = metrics
        self.throttle = throttle
        self.topics = Topics(settings.mqtt_topic_prefix)
        self.connected = threading.Event()
        # Unbounded as a container: `bound` is enforced by pausing the socket (`_enqueue`).
        self.bound = queue_bound(settings)
        self.resume_at = int(self.bound * INGEST_QUEUE_RESUME_FRACTION)
        self.queue: asyncio.Queue[Inbound] = asyncio.Queue()
        self._pause_logged_at = -INGEST_LOG_WINDOW_SECONDS
        self._pauses_unlogged = 0
        self._connection = 0
        self._stopping = False
        self.instance_topic = instance_status_topic(settings)
        self._offline = _offline_of(settings.instance)
        self._client = self._make_client()
        self.driver = LoopDriver(
            self._client, on_failure=self._count_failure, on_broken=self.connected.clear
        )

    @property
    def connection(self) -> int:
        """The number of the current connection (it grows on every reconnect)."""
        return self._connection

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
        # One Will per connection: on the shared topic, naming this instance. A live instance
        # that sees it says the shared topic is online again and marks this instance offline.
        client.will_set(self.topics.bridge_status, self._offline, qos=1, retain=True)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # --- lifecycle ---

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        endpoint = self.settings.mqtt
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry_seconds(self.settings)
        properties.ReceiveMaximum = MQTT_RECEIVE_MAXIMUM
        # Only records the parameters: the driver connects (and reconnects) with them.
        self._client.connect_async(
            endpoint.host,
            endpoint.port,
            keepalive=MQTT_KEEPALIVE_SECONDS,
            clean_start=False,
            properties=properties,
        )
        self.driver.start(loop)

    async def stop(self) -> None:
        """Say offline (when connected), disconnect, end the driver.

        Like the Last Will: this instance offline, and the shared topic offline naming it,
        which any other live instance answers with online again.
        """
        self._stopping = True
        try:
            if self.connected.is_set():
                mine = self._client.publish(self.instance_topic, _OFFLINE, qos=1, retain=True)
                shared = self._client.publish(
                    self.topics.bridge_status, self._offline, qos=1, retain=True
                )
                await until(lambda: mine.is_published() and shared.is_published(), 1.0)
        except (RuntimeError, ValueError, TimeoutError) as exc:
            logger.info("Bridge offline status not sent reason=%s", exc or "timeout")
        await self.driver.stop()

    def healthy(self) -> bool:
        """Connected, and the driver (reconnects, keepalive) running."""
        return self.connected.is_set() and self.driver.alive

    # --- on the loop ---

    def publish(self, topic: str, payload: bytes) -> None:
        self.driver.publish(topic, payload)

    async def next_batch(self, limit: int) -> list[Inbound]:
        """Wait for a message, take up to `limit`; reading resumes at the low-water mark."""
        batch = [await self.queue.get()]
        while len(batch) < limit and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if self.queue.qsize() <= self.resume_at:
            self.driver.resume_reading()
        return batch

    def ack(self, inbound: Inbound) -> None:
        """Acknowledge on the connection the message came on; after a reconnect its message id
        may belong to another, uncommitted scan, and the broker redelivers this one anyway.
        While disconnected nothing is acknowledged: paho would queue the PUBACK for the next
        connection."""
        inbound.handled = True
        if inbound.qos > 0 and inbound.connection == self._connection and self.connected.is_set():
            self._client.ack(inbound.mid, inbound.qos)

    def _count_failure(self, step: str) -> None:
        """A callback or paho step raised: counted with the messages left to the broker."""
        self.metrics.mqtt_dropped.labels("callback_error").inc()
        self.throttle.warning(("", f"callback_error_{step}"), "MQTT callback failed step=%s", step)

    def _enqueue(self, inbound: Inbound) -> None:
        """Into the queue, directly (on the loop); at the bound, stop reading the socket."""
        if self.queue.qsize() >= self.bound:
            self._drop_stale()
        # QoS 0 (statuses only; QoS 0 scans never get here) is the one kind that may be lost:
        # it takes only the room Receive Maximum leaves. A QoS 1 message is always kept.
        if inbound.qos == 0 and self.queue.qsize() >= self.bound - MQTT_RECEIVE_MAXIMUM:
            self.metrics.mqtt_dropped.labels("queue_full").inc()
            self.throttle.warning(
                ("", "queue_full"), "MQTT message dropped reason=queue_full topic=%s", inbound.topic
            )
            return
        self.queue.put_nowait(inbound)
        if self.queue.qsize() >= self.bound and not self.driver.paused:
            self.driver.pause_reading()
            self._log_pause()

    def _log_pause(self) -> None:
        """One line per log window: a pause is normal under a burst, not worth one per batch."""
        now = time.monotonic()
        if now - self._pause_logged_at < INGEST_LOG_WINDOW_SECONDS:
            self._pauses_unlogged += 1
            return
        logger.info(
            "MQTT reading paused queue=%d bound=%d resume_at=%d pauses_since_last_line=%d",
            self.queue.qsize(),
            self.bound,
            self.resume_at,
            self._pauses_unlogged,
        )
        self._pause_logged_at, self._pauses_unlogged = now, 0

    def _drop_stale(self) -> None:
        """Forget queued messages of earlier connections: the broker redelivers each of them."""
        kept: list[Inbound] = []
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item.connection == self._connection:
                kept.append(item)
        for item in kept:
            self.queue.put_nowait(item)

    # --- paho callbacks: they run on the loop (inside loop_read) and must never raise ---

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
            self.driver.connected()  # the next drop waits the shortest backoff again
            client.subscribe(
                [
                    (scan_filter(self.settings), 1),
                    (self.topics.all_statuses, 1),
                    (self.topics.bridge_status, 1),
                    (self.instance_topic, 1),
                ]
            )
            client.publish(self.instance_topic, _ONLINE, qos=1, retain=True)
            client.publish(self.topics.bridge_status, _ONLINE, qos=1, retain=True)
            self.connected.set()
            logger.info(
                "MQTT connected session_present=%s connection=%d",
                getattr(flags, "session_present", "?"),
                self._connection,
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
            if not self._stopping:
                logger.warning("MQTT disconnected reason=%s (reconnecting)", reason_code)
        except Exception:
            logger.exception("MQTT on_disconnect failed")

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        # paho-mqtt calls this on the loop, from loop_read(): straight into the bounded queue
        # (a QoS 0 scan is dropped right here, an oversize payload is not copied).
        try:
            if message.topic in (self.topics.bridge_status, self.instance_topic):
                self._on_bridge_status(message.topic, bytes(message.payload))
                if message.qos > 0:  # or it holds an in-flight slot until the next reconnect
                    self._client.ack(message.mid, message.qos)
                return
            if message.qos == 0 and self._drop_qos0_scan(message.topic):
                return
            oversize = len(message.payload) > MAX_PAYLOAD_BYTES
            self._enqueue(
                Inbound(
                    message.topic,
                    b"" if oversize else bytes(message.payload),
                    message.mid,
                    message.qos,
                    time.perf_counter(),
                    utcnow(),
                    self._connection,
                    oversize,
                )
            )
        except Exception:
            self._count_failure("message")
            logger.exception("MQTT message hand-over failed topic=%s", message.topic)

    def _on_bridge_status(self, topic: str, payload: bytes) -> None:
        """On the loop: while this instance lives, neither topic may say offline.

        `bridge/status` offline is another instance's Will (or stop): say online again, and
        mark that instance offline on its own topic. Our own topic offline is an old Will
        or a late mark by another instance after we reconnected: say online again.
        """
        if self._stopping or not self.connected.is_set():
            return
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if not isinstance(body, dict) or body.get("online") is not False:
            return
        self._client.publish(topic, _ONLINE, qos=1, retain=True)
        other = body.get("instance")
        if (
            topic == self.topics.bridge_status
            and isinstance(other, str)
            and other != self.settings.instance
            and _TOPIC_LEVEL.match(other)
        ):
            other_topic = f"{self.topics.prefix}/bridge/{other}/status"
            self._client.publish(other_topic, _OFFLINE, qos=1, retain=True)
            logger.info("Bridge instance offline instance=%s", other)

    def _drop_qos0_scan(self, topic: str) -> bool:
        """In the message callback: a QoS 0 scan is counted and dropped, never queued."""
        parsed = self.topics.parse_reader_topic(topic)
        if parsed is None or parsed[1] != "scan":
            return False
        device_id = parsed[0]
        self.metrics.scan_rejections.labels("qos0").inc()
        self.throttle.warning(
            (device_id, "qos0"), "Scan dropped device_id=%s reason=qos0", device_id
        )
        return True
