"""paho's message callback hands over into a bounded queue: QoS 0 scans dropped, oversize
not copied.

The callback runs on the loop (paho is driven by it), so it is called directly here: no
broker, no socket, no thread, no loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import generate_latest

from edge_bridge.config import Settings
from edge_bridge.errors import ConfigError
from edge_bridge.logthrottle import LogThrottle
from edge_bridge.metrics import Metrics
from edge_bridge.mqtt_client import MqttClient
from edge_bridge.tuning import MQTT_RECEIVE_MAXIMUM
from edge_bridge.wire import MAX_PAYLOAD_BYTES


def _client(settings: Settings) -> tuple[MqttClient, Metrics]:
    metrics = Metrics()
    throttle = LogThrottle(logging.getLogger("test.mqtt_handover"))
    client = MqttClient(settings, metrics=metrics, throttle=throttle)
    client._connection = 1
    return client, metrics


def _deliver(client: MqttClient, kind: str, payload: bytes, *, qos: int, mid: int = 1) -> None:
    topic = client.topics.scan("reader-101") if kind == "scan" else client.topics.status("r")
    message = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
    message.payload = payload
    message.qos = qos
    client._on_message(client._client, None, message)


def _counter(metrics: Metrics, name: str, reason: str) -> float:
    text = generate_latest(metrics.registry).decode()
    found = re.search(rf'^{name}_total\{{reason="{reason}"\}} ([0-9.]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_queue_smaller_than_the_receive_maximum_is_refused(
    settings_factory: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigError, match="INGEST_QUEUE_SIZE"):
        _client(settings_factory(ingest_queue_size=MQTT_RECEIVE_MAXIMUM - 1))


def test_a_qos0_scan_is_counted_and_never_queued(
    settings_factory: Callable[..., Settings],
) -> None:
    client, metrics = _client(settings_factory())

    for mid in range(1, 101):
        _deliver(client, "scan", b'{"scan_id": "x"}', qos=0, mid=mid)

    assert client.queue.qsize() == 0
    assert _counter(metrics, "edge_scan_rejections", "qos0") == 100


def test_an_oversize_payload_is_handed_over_as_an_empty_marker(
    settings_factory: Callable[..., Settings],
) -> None:
    client, _metrics = _client(settings_factory())

    _deliver(client, "scan", b"x" * (MAX_PAYLOAD_BYTES + 1), qos=1)
    _deliver(client, "scan", b"y" * MAX_PAYLOAD_BYTES, qos=1, mid=2)

    big, limit = client.queue.get_nowait(), client.queue.get_nowait()
    assert (big.oversize, big.payload) == (True, b"")
    assert (limit.oversize, len(limit.payload)) == (False, MAX_PAYLOAD_BYTES)


def test_qos0_statuses_leave_the_receive_maximum_free_for_qos1_messages(
    settings_factory: Callable[..., Settings],
) -> None:
    size = MQTT_RECEIVE_MAXIMUM + 50
    client, metrics = _client(settings_factory(ingest_queue_size=size))

    for mid in range(200):
        _deliver(client, "status", b'{"online": true}', qos=0, mid=mid)
    for mid in range(MQTT_RECEIVE_MAXIMUM):
        _deliver(client, "scan", b"{}", qos=1, mid=mid)

    assert client.queue.qsize() == size
    assert _counter(metrics, "edge_mqtt_messages_dropped", "queue_full") == 150
    assert sum(1 for item in client.queue._queue if item.qos == 1) == MQTT_RECEIVE_MAXIMUM  # type: ignore[attr-defined]


def test_a_full_queue_makes_room_by_forgetting_messages_of_an_earlier_connection(
    settings_factory: Callable[..., Settings],
) -> None:
    client, metrics = _client(settings_factory(ingest_queue_size=MQTT_RECEIVE_MAXIMUM))
    for mid in range(MQTT_RECEIVE_MAXIMUM):
        _deliver(client, "scan", b"{}", qos=1, mid=mid)

    client._connection = 2  # reconnected: the broker redelivers everything unacknowledged
    _deliver(client, "scan", b"{}", qos=1, mid=1)

    assert [item.connection for item in client.queue._queue] == [2]  # type: ignore[attr-defined]
    assert _counter(metrics, "edge_mqtt_messages_dropped", "queue_full") == 0


class RecordingPaho:
    """Stands in for paho's client: records the acknowledgements sent."""

    def __init__(self) -> None:
        self.acks: list[int] = []

    def ack(self, mid: int, _qos: int) -> None:
        self.acks.append(mid)


def test_nothing_is_acknowledged_while_disconnected(
    settings_factory: Callable[..., Settings],
) -> None:
    client, _metrics = _client(settings_factory())
    client._client = paho = RecordingPaho()  # type: ignore[assignment]
    _deliver(client, "scan", b"{}", qos=1, mid=7)
    _deliver(client, "scan", b"{}", qos=1, mid=8)
    first, second = client.queue.get_nowait(), client.queue.get_nowait()

    client.connected.set()
    client.ack(first)
    client.connected.clear()  # the broker went away after the commit of the second
    client.ack(second)

    assert paho.acks == [7]
    assert second.handled  # left to the broker's redelivery, on purpose


class RecordingDriver:
    """Stands in for the loop driver: records pauses and resumes of reading the socket."""

    def __init__(self) -> None:
        self.paused = False
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.paused = True
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.paused = False
        self.calls.append("resume")


def test_a_full_queue_pauses_reading_and_keeps_every_qos1_message(
    settings_factory: Callable[..., Settings],
) -> None:
    client, metrics = _client(settings_factory(ingest_queue_size=MQTT_RECEIVE_MAXIMUM))
    client.driver = driver = RecordingDriver()  # type: ignore[assignment]

    for mid in range(MQTT_RECEIVE_MAXIMUM + 5):  # the last 5 were read before the pause
        _deliver(client, "scan", b"{}", qos=1, mid=mid)

    assert driver.calls == ["pause"]
    assert client.queue.qsize() == MQTT_RECEIVE_MAXIMUM + 5
    assert _counter(metrics, "edge_mqtt_messages_dropped", "queue_full") == 0


def test_reading_resumes_once_the_worker_takes_the_queue_down_to_the_low_water_mark(
    settings_factory: Callable[..., Settings],
) -> None:
    client, _metrics = _client(settings_factory(ingest_queue_size=MQTT_RECEIVE_MAXIMUM))
    client.driver = driver = RecordingDriver()  # type: ignore[assignment]
    for mid in range(MQTT_RECEIVE_MAXIMUM):
        _deliver(client, "scan", b"{}", qos=1, mid=mid)
    above = MQTT_RECEIVE_MAXIMUM - client.resume_at - 1

    asyncio.run(client.next_batch(above))
    after_first = list(driver.calls)
    asyncio.run(client.next_batch(1))

    assert after_first == ["pause"]  # one above the low-water mark: still paused
    assert driver.calls == ["pause", "resume"]
    assert client.queue.qsize() == client.resume_at


def test_a_bridge_status_message_is_acknowledged_at_once(
    settings_factory: Callable[..., Settings],
) -> None:
    client, _metrics = _client(settings_factory())
    client._client = paho = RecordingPaho()  # type: ignore[assignment]
    message = mqtt.MQTTMessage(mid=9, topic=client.topics.bridge_status.encode())
    message.payload = b'{"online": true}'
    message.qos = 1

    client._on_message(client._client, None, message)

    assert paho.acks == [9]
    assert client.queue.qsize() == 0
