"""The shipped broker config and ACL (mosquitto/), checked against a real mosquitto.

Each test starts its own broker from mosquitto/mosquitto.conf with the ACL rendered for a
fresh topic prefix. "Does not arrive" is proven with a sentinel: after the forbidden message,
an allowed one goes the same way, and the forbidden one must not have come before it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_bridge.wire import Topics
from tests.support.broker import Broker, broker_factory, unique_prefix

pytestmark = pytest.mark.integration

WAIT_SECONDS = 5.0
USERS = {"edge-bridge": "bridge-pw", "reader-a": "pw-a", "reader-b": "pw-b"}
SUCCESS = 0x00
NOT_AUTHORIZED = 0x87
ONE_DAY_SECONDS = 86400


class _Client:
    """A paho client on its own network thread; what arrives waits in queues for bounded gets."""

    def __init__(
        self,
        broker: Broker,
        username: str | None,
        password: str | None = None,
        *,
        client_id: str | None = None,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self.broker = broker
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id if client_id is not None else (username or ""),
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.paho.username_pw_set(username, password)
        if will is not None:
            self.paho.will_set(will[0], will[1], qos=1, retain=True)
        self.connacks: queue.Queue[ReasonCode] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.acks: queue.Queue[tuple[str, int, ReasonCode]] = queue.Queue()
        self.disconnected = threading.Event()
        # paho-mqtt calls these from its network thread (loop_start); they only hand over.
        self.paho.on_connect = lambda _c, _u, _f, reason, _p: self.connacks.put(reason)
        self.paho.on_message = lambda _c, _u, message: self.messages.put(message)
        self.paho.on_publish = lambda _c, _u, mid, reason, _p: self.acks.put(("pub", mid, reason))
        self.paho.on_subscribe = lambda _c, _u, mid, reasons, _p: self.acks.put(
            ("sub", mid, reasons[0])
        )
        self.paho.on_disconnect = lambda *_args: self.disconnected.set()

    def connect(self, *, clean_start: bool = True, session_expiry_seconds: int = 0) -> ReasonCode:
        """Connect, start the network thread and return the CONNACK's reason code."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry_seconds
        self.paho.connect(
            self.broker.host, self.broker.port, clean_start=clean_start, properties=properties
        )
        self.paho.loop_start()
        return self.connacks.get(timeout=WAIT_SECONDS)

    def subscribe(self, topic: str) -> ReasonCode:
        """Subscribe with QoS 1 and return the SUBACK's reason code."""
        _, mid = self.paho.subscribe(topic, qos=1)
        return self._ack("sub", mid)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """Publish with QoS 1 and return the PUBACK's reason code."""
        return self._ack("pub", self.paho.publish(topic, payload, qos=1, retain=retain).mid)

    def next_message(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT_SECONDS)

    def messages_until(self, sentinel: bytes) -> list[tuple[str, bytes]]:
        """Every (topic, payload) that arrives before the message whose payload is `sentinel`."""
        before: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            if message.payload == sentinel:
                return before
            before.append((message.topic, message.payload))

    def drop_with_will(self) -> None:
        """Disconnect so that the broker publishes the Last Will (MQTT v5 reason 0x04)."""
        reason = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
        self.paho.disconnect(reasoncode=reason)
        assert self.disconnected.wait(WAIT_SECONDS)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()

    def _ack(self, kind: str, mid: int) -> ReasonCode:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            got = self.acks.get(timeout=max(0.0, deadline - time.monotonic()))
            if got[:2] == (kind, mid):
                return got[2]


Connect = Callable[..., _Client]


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    with broker_factory(tmp_path) as start:
        yield start


@pytest.fixture
def broker(start_broker: Callable[..., Broker]) -> Broker:
    return start_broker(prefix=unique_prefix(), users=USERS)


@pytest.fixture
def topics(broker: Broker) -> Topics:
    return Topics(broker.prefix)


@pytest.fixture
def clients() -> Iterator[list[_Client]]:
    """Clients to close at the end of the test."""
    opened: list[_Client] = []
    yield opened
    for client in opened:
        client.close()


@pytest.fixture
def connect(broker: Broker, clients: list[_Client]) -> Connect:
    """`connect(username, client_id=…, will=…) -> _Client`, logged in with its USERS password."""

    def _connect(username: str, **options: Any) -> _Client:
        client = _Client(broker, username, USERS[username], **options)
        clients.append(client)
        reason = client.connect()
        assert reason.value == SUCCESS, f"{username} could not connect: {reason}"
        return client

    return _connect


def test_reader_publishes_its_own_scan_and_the_bridge_receives_it(
    connect: Connect, topics: Topics
) -> None:
    bridge = connect("edge-bridge")
    bridge.subscribe(topics.all_scans)
    reader = connect("reader-a")

    reason = reader.publish(topics.scan("reader-a"), b'{"scan_id": "1"}')

    assert reason.value == SUCCESS
    message = bridge.next_message()
    assert (message.topic, message.payload) == (topics.scan("reader-a"), b'{"scan_id": "1"}')


def test_reader_cannot_publish_on_another_readers_scan_topic(
    connect: Connect, topics: Topics
) -> None:
    bridge = connect("edge-bridge")
    bridge.subscribe(topics.all_scans)
    reader = connect("reader-a")

    reason = reader.publish(topics.scan("reader-b"), b"forged")
    reader.publish(topics.scan("reader-a"), b"sentinel")

    assert reason.value == NOT_AUTHORIZED
    assert bridge.messages_until(b"sentinel") == []


def test_reader_cannot_read_another_readers_feedback(connect: Connect, topics: Topics) -> None:
    reader_a = connect("reader-a")
    reader_a.subscribe(topics.feedback("reader-b"))
    reader_a.subscribe(topics.feedback("reader-a"))
    reader_b = connect("reader-b")
    reader_b.subscribe(topics.feedback("reader-b"))
    bridge = connect("edge-bridge")

    bridge.publish(topics.feedback("reader-b"), b"for-b")
    bridge.publish(topics.feedback("reader-a"), b"sentinel")

    assert reader_a.messages_until(b"sentinel") == []
    assert reader_b.next_message().payload == b"for-b"


def test_reader_subscribed_to_every_scan_receives_none_of_the_others(
    connect: Connect, topics: Topics
) -> None:
    spy = connect("reader-a")
    spy.subscribe(topics.all_scans)
    spy.subscribe(topics.feedback("reader-a"))
    reader_b = connect("reader-b")
    bridge = connect("edge-bridge")

    reader_b.publish(topics.scan("reader-b"), b"scan-of-b")
    bridge.publish(topics.feedback("reader-a"), b"sentinel")

    assert spy.messages_until(b"sentinel") == []


def test_every_client_can_read_the_retained_bridge_status(connect: Connect, topics: Topics) -> None:
    bridge = connect("edge-bridge")
    bridge.publish(topics.bridge_status, b'{"online": true}', retain=True)
    reader = connect("reader-b")

    reader.subscribe(topics.bridge_status)

    assert reader.next_message().payload == b'{"online": true}'


def test_anonymous_client_is_refused_as_not_authorized(
    broker: Broker, clients: list[_Client]
) -> None:
    client = _Client(broker, None, client_id="anonymous")
    clients.append(client)

    reason = client.connect()

    assert reason.value == NOT_AUTHORIZED


def test_reader_with_a_wrong_password_is_refused_as_not_authorized(
    broker: Broker, clients: list[_Client]
) -> None:
    client = _Client(broker, "reader-a", "not-the-password")
    clients.append(client)

    reason = client.connect()

    assert reason.value == NOT_AUTHORIZED


def test_reader_sending_another_readers_client_id_does_not_take_over_its_session(
    connect: Connect, topics: Topics
) -> None:
    genuine_a = connect("reader-a")
    reader_b = connect("reader-b")
    reader_b.subscribe(topics.feedback("reader-b"))
    bridge = connect("edge-bridge")

    connect("reader-a", client_id="reader-b")  # use_username_as_clientid makes it `reader-a`
    bridge.publish(topics.feedback("reader-b"), b"still-there")

    assert reader_b.next_message().payload == b"still-there"
    assert not reader_b.disconnected.is_set()
    assert genuine_a.disconnected.wait(WAIT_SECONDS)  # the session it replaced was its own


def test_reader_last_will_reaches_the_bridge_only_on_its_own_status_topic(
    connect: Connect, topics: Topics
) -> None:
    bridge = connect("edge-bridge")
    bridge.subscribe(topics.all_statuses)
    bridge.subscribe(topics.bridge_status)
    forger = connect("reader-b", will=(topics.status("reader-a"), b"forged-will"))
    honest = connect("reader-a", will=(topics.status("reader-a"), b"honest-will"))

    forger.drop_with_will()
    bridge.publish(topics.bridge_status, b"round-trip")  # reaches the broker after the drop
    honest.drop_with_will()

    assert bridge.messages_until(b"honest-will") == [(topics.bridge_status, b"round-trip")]


def test_scan_queued_for_the_offline_bridge_survives_a_broker_restart(
    start_broker: Callable[..., Broker], clients: list[_Client]
) -> None:
    broker = start_broker(prefix=unique_prefix(), users=USERS, persistence=True)
    topics = Topics(broker.prefix)
    bridge = _Client(broker, "edge-bridge", USERS["edge-bridge"])
    clients.append(bridge)
    bridge.connect(clean_start=False, session_expiry_seconds=ONE_DAY_SECONDS)
    bridge.subscribe(topics.all_scans)
    bridge.close()
    reader = _Client(broker, "reader-a", USERS["reader-a"])
    clients.append(reader)
    reader.connect()
    reader.publish(topics.scan("reader-a"), b"while-the-bridge-was-away")

    broker.restart()
    returning = _Client(broker, "edge-bridge", USERS["edge-bridge"])
    clients.append(returning)
    returning.connect(clean_start=False, session_expiry_seconds=ONE_DAY_SECONDS)

    assert returning.next_message().payload == b"while-the-bridge-was-away"


def test_bridge_receives_scans_through_a_shared_subscription_and_a_reader_does_not(
    connect: Connect, topics: Topics
) -> None:
    bridge = connect("edge-bridge")
    assert bridge.subscribe(f"$share/edge/{topics.all_scans}").value == 1  # granted QoS 1
    spy = connect("reader-b")
    spy.subscribe(f"$share/spies/{topics.all_scans}")
    spy.subscribe(topics.feedback("reader-b"))
    reader = connect("reader-a")

    reader.publish(topics.scan("reader-a"), b"shared-scan")
    bridge.publish(topics.feedback("reader-b"), b"sentinel")

    assert bridge.next_message().payload == b"shared-scan"
    assert spy.messages_until(b"sentinel") == []
