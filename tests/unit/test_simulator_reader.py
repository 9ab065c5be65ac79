"""One emulated reader against a fake paho client: no sockets, no threads (simulator/reader.py)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from paho.mqtt.client import ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge_bridge.wire import ScanResult
from simulator.broker import BrokerConfig
from simulator.reader import Feedback, Reader, ReaderOptions

SCAN_TOPIC = "test/readers/reader-101/scan"
FEEDBACK_TOPIC = "test/readers/reader-101/feedback"
STATUS_TOPIC = "test/readers/reader-101/status"


@dataclass
class Published:
    topic: str
    payload: Any
    qos: int
    retain: bool

    def json(self) -> Any:
        raw = self.payload.decode() if isinstance(self.payload, bytes) else self.payload
        return json.loads(raw)


class _Info:
    def wait_for_publish(self, timeout: float | None = None) -> None:
        return None


class FakeClient:
    """Records what the reader asks of paho and lets a test play the broker's part."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.subscribed: list[tuple[str, int]] = []
        self.disconnects: list[Any] = []
        self.connects: list[dict[str, Any]] = []
        self.will: tuple[str, Any, int, bool] | None = None
        self.login: tuple[str, str | None] | None = None
        self.on_connect: Any = None
        self.on_disconnect: Any = None
        self.on_message: Any = None

    def username_pw_set(self, username: str, password: str | None = None) -> None:
        self.login = (username, password)

    def will_set(self, topic: str, payload: Any, qos: int = 0, retain: bool = False) -> None:
        self.will = (topic, payload, qos, retain)

    def reconnect_delay_set(self, min_delay: int = 1, max_delay: int = 120) -> None:
        pass

    def tls_set(self) -> None:
        pass

    def connect_async(self, host: str, port: int, keepalive: int, **kwargs: Any) -> None:
        self.connects.append({"host": host, "port": port, **kwargs})

    def loop_start(self) -> None:
        pass

    def loop_stop(self) -> None:
        pass

    def disconnect(self, reasoncode: Any = None, properties: Any = None) -> None:
        self.disconnects.append(reasoncode)

    def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False) -> _Info:
        self.published.append(Published(topic, payload, qos, retain))
        return _Info()

    def subscribe(self, topic: str, qos: int = 0) -> None:
        self.subscribed.append((topic, qos))

    # the broker's part
    def accept(self) -> None:
        ok = ReasonCode(PacketTypes.CONNACK, "Success")
        self.on_connect(self, None, ConnectFlags(session_present=True), ok, None)

    def refuse(self) -> None:
        no = ReasonCode(PacketTypes.CONNACK, "Not authorized")
        self.on_connect(self, None, ConnectFlags(session_present=False), no, None)

    def drop(self) -> None:
        lost = ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")
        self.on_disconnect(self, None, DisconnectFlags(False), lost, None)

    def answer(self, scan_id: str, result: str = "checked_in", message: str = "Hallo Max!") -> None:
        msg = MQTTMessage(topic=FEEDBACK_TOPIC.encode())
        msg.payload = json.dumps(
            {"scan_id": scan_id, "result": result, "message": message}
        ).encode()
        self.on_message(self, None, msg)

    def scans(self) -> list[dict[str, Any]]:
        return [p.json() for p in self.published if p.topic == SCAN_TOPIC]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_reader(
    client: FakeClient, clock: FakeClock | None = None, **options: Any
) -> tuple[Reader, list[Feedback]]:
    answers: list[Feedback] = []
    broker = BrokerConfig.from_url(
        "mqtt://ignored:secret@127.0.0.1:1883", prefix="test", credentials={"reader-101": "pw"}
    )
    reader = Reader(
        "reader-101",
        broker,
        options=ReaderOptions(**options),
        on_feedback=answers.append,
        client=client,
        clock=clock or FakeClock(),
    )
    return reader, answers


def test_reader_logs_in_as_its_device_with_a_retained_last_will() -> None:
    client = FakeClient()

    make_reader(client)

    assert client.login == ("reader-101", "pw")
    assert client.will == (STATUS_TOPIC, json.dumps({"online": False}), 1, True)


def test_reader_keeps_a_persistent_session() -> None:
    client = FakeClient()
    reader, _ = make_reader(client)

    reader.start()

    assert client.connects[0]["clean_start"] is False
    assert client.connects[0]["properties"].SessionExpiryInterval >= 86400


def test_on_connect_the_reader_says_it_is_online_and_subscribes_to_its_feedback() -> None:
    client = FakeClient()
    reader, _ = make_reader(client)
    reader.start()

    client.accept()

    status = client.published[0]
    assert (status.topic, status.qos, status.retain) == (STATUS_TOPIC, 1, True)
    assert status.json()["online"] is True and status.json()["firmware"] == "sim-1.0"
    assert status.json()["ts"].endswith("Z")
    assert client.subscribed == [(FEEDBACK_TOPIC, 1)]
    assert reader.is_connected


def test_scan_is_published_at_qos_1_with_a_unique_id_and_the_read_time() -> None:
    client = FakeClient()
    reader, _ = make_reader(client)
    reader.start()
    client.accept()

    first = reader.scan("04A1B2C3D4")
    second = reader.scan("04A1B2C3D4")

    scans = [p for p in client.published if p.topic == SCAN_TOPIC]
    assert [p.qos for p in scans] == [1, 1]
    assert [s["scan_id"] for s in client.scans()] == [first, second]
    assert first != second
    assert client.scans()[0]["tag"] == "04A1B2C3D4"
    assert client.scans()[0]["ts"].endswith("Z")


def test_feedback_acknowledges_the_scan_and_reaches_the_callback() -> None:
    client = FakeClient()
    clock = FakeClock()
    reader, answers = make_reader(client, clock)
    reader.start()
    client.accept()
    scan_id = reader.scan("04A1B2C3D4")
    clock.now += 0.25

    client.answer(scan_id)

    assert [(a.scan_id, a.result, a.latency_seconds) for a in answers] == [
        (scan_id, ScanResult.CHECKED_IN, 0.25)
    ]
    assert reader.unacknowledged() == []
    assert reader.stats().acked == 1


def test_feedback_for_an_already_answered_scan_is_ignored() -> None:
    client = FakeClient()
    reader, answers = make_reader(client)
    reader.start()
    client.accept()
    scan_id = reader.scan("04A1B2C3D4")
    client.answer(scan_id)

    client.answer(scan_id)
    client.answer("never-sent")

    assert len(answers) == 1


def test_malformed_feedback_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient()
    reader, answers = make_reader(client)
    reader.start()
    client.accept()
    scan_id = reader.scan("04A1B2C3D4")

    client.answer(scan_id, result="exploded")

    assert answers == []
    assert reader.unacknowledged() == [scan_id]
    assert "Malformed feedback ignored device_id=reader-101" in caplog.text


def test_unanswered_scan_is_resent_with_the_same_id_and_ts_after_the_timeout() -> None:
    client = FakeClient()
    clock = FakeClock()
    reader, _ = make_reader(client, clock, resend_after_seconds=5.0)
    reader.start()
    client.accept()
    reader.scan("04A1B2C3D4")

    clock.now += 4.9
    early = reader.resend_overdue()
    clock.now += 0.2
    late = reader.resend_overdue()

    assert (early, late) == (0, 1)
    first, again = client.scans()
    assert first == again


def test_resends_are_bounded_and_the_scan_stays_unacknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeClient()
    clock = FakeClock()
    reader, _ = make_reader(client, clock, resend_after_seconds=1.0, max_resends=2)
    reader.start()
    client.accept()
    scan_id = reader.scan("04A1B2C3D4")

    for _ in range(5):
        clock.now += 1.5
        reader.resend_overdue()

    assert len(client.scans()) == 3
    assert reader.unacknowledged() == [scan_id]
    assert reader.stats().resends == 2
    assert caplog.text.count("giving up resending") == 1


def test_scans_while_offline_are_buffered_and_sent_in_order_with_their_read_time() -> None:
    client = FakeClient()
    reader, _ = make_reader(client)
    reader.start()
    client.accept()
    reader.go_offline()

    ids = [reader.scan("04A1B2C3D4"), reader.scan("04A1B2C3D5"), reader.scan("04A1B2C3D6")]
    assert client.scans() == []
    assert reader.stats().buffered == 3

    reader.go_online()
    client.accept()

    assert [s["scan_id"] for s in client.scans()] == ids
    assert reader.stats().buffered == 0
    assert reader.unacknowledged() == ids


def test_buffered_scan_keeps_the_ts_it_was_read_at() -> None:
    client = FakeClient()
    reader, _ = make_reader(client)
    reader.start()
    read_at = datetime(2026, 11, 26, 13, 30, 0, 123000, tzinfo=UTC)

    reader.scan("04A1B2C3D4", ts=read_at)
    client.accept()

    assert client.scans()[0]["ts"] == "2026-11-26T13:30:00.123Z"


def test_full_buffer_drops_the_oldest_scan_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeClient()
    reader, _ = make_reader(client, buffer_size=2)
    caplog.set_level(logging.WARNING)

    oldest = reader.scan("04A1B2C3D4")
    kept = [reader.scan("04A1B2C3D5"), reader.scan("04A1B2C3D6")]

    assert reader.unacknowledged() == kept
    assert reader.stats().dropped == 1
    assert f"dropping oldest scan device_id=reader-101 scan_id={oldest}" in caplog.text


def test_go_offline_disconnects_so_that_the_broker_publishes_the_last_will() -> None:
    client = FakeClient()
    reader, _ = make_reader(client)
    reader.start()
    client.accept()

    reader.go_offline()

    assert client.disconnects[-1].value == 0x04
    assert not reader.is_connected


def test_lost_connection_buffers_until_the_reader_is_back() -> None:
    client = FakeClient()
    reader, _ = make_reader(client)
    reader.start()
    client.accept()
    client.drop()

    scan_id = reader.scan("04A1B2C3D4")
    assert client.scans() == []
    client.accept()

    assert [s["scan_id"] for s in client.scans()] == [scan_id]


def test_refused_connection_leaves_the_reader_offline(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient()
    reader, _ = make_reader(client)
    reader.start()

    client.refuse()

    assert not reader.is_connected
    assert "Reader connection refused device_id=reader-101" in caplog.text


def test_stop_says_offline_retained_and_disconnects() -> None:
    client = FakeClient()
    reader, _ = make_reader(client)
    reader.start()
    client.accept()

    reader.stop()

    last = client.published[-1]
    assert (last.topic, last.retain, last.json()["online"]) == (STATUS_TOPIC, True, False)
    assert client.disconnects


class _FailedInfo:
    def wait_for_publish(self, timeout: float | None = None) -> None:
        raise RuntimeError("Message publish failed: The client is not currently connected.")


def test_stop_still_disconnects_when_the_connection_dropped_during_the_goodbye() -> None:
    client = FakeClient()
    reader, _ = make_reader(client)
    reader.start()
    client.accept()
    client.publish = lambda *args, **kwargs: _FailedInfo()  # type: ignore[method-assign]

    reader.stop()

    assert client.disconnects
    assert not reader.is_connected


def test_a_connection_lost_while_switching_off_is_not_reported_as_a_problem(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeClient()
    reader, _ = make_reader(client)
    reader.start()
    client.accept()

    reader.expect_stop()
    client.drop()
    reader.stop()

    assert "lost its connection" not in caplog.text
    assert client.disconnects
