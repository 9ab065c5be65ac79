"""Garbage on the scan topic: the bridge stays up, counts every message, and still works.

Also the bounds in front of the worker: QoS 0 scans are dropped and counted, oversize
payloads are refused (and far oversize ones never get past the broker).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_bridge.tuning import MQTT_RECEIVE_MAXIMUM
from edge_bridge.wire import MAX_PAYLOAD_BYTES
from tests.integration.conftest import System

pytestmark = pytest.mark.integration

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
SCAN_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "scan_id": st.one_of(st.text(max_size=70), st.integers(), st.none()),
        "tag": st.one_of(st.text(max_size=70), st.integers(), st.just("04:A1:B2:C3")),
        "ts": st.one_of(st.text(max_size=30), st.integers(), st.just("2026-13-45T99:00:00Z")),
    },
)
NESTED = b"[" * MAX_PAYLOAD_BYTES  # json.loads raises RecursionError, not JSONDecodeError


def _sized(size: int) -> bytes:
    """A scan-shaped JSON document of exactly `size` bytes (its tag is the padding)."""
    base = json.dumps({"scan_id": "sized", "tag": ""}).encode()
    return json.dumps({"scan_id": "sized", "tag": "A" * (size - len(base))}).encode()


def _escaped_scan(text: str) -> bytes:
    """A scan whose scan_id and tag hold `text` as written (JSON escapes: lone surrogates, NUL)."""
    return f'{{"scan_id": "{text}", "tag": "{text}", "ts": "2026-01-01T00:00:00Z"}}'.encode()


HOSTILE = st.one_of(
    st.integers(1, MAX_PAYLOAD_BYTES // 2).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, MAX_PAYLOAD_BYTES).map(lambda depth: b'{"a":' * (depth // 5)),
    st.integers(300, 4090).map(lambda digits: b'{"scan_id": "n", "ts": ' + b"9" * digits + b"}"),
    st.just(b'{"scan_id": "n", "ts": 1e999999}'),
    st.sampled_from(["\\ud800", "\\udfff", "a\\u0000b", "\\u0000"]).map(_escaped_scan),
    st.binary(max_size=40).map(lambda raw: b"\x00" + raw + b"\x00"),
    st.sampled_from([MAX_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES + 1]).map(_sized),
)
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=4097, max_size=6000),
    JSON.map(lambda value: json.dumps(value).encode()),
    SCAN_LIKE.map(lambda value: json.dumps(value).encode()),
    HOSTILE,
)


def _scans_counted(metrics_text: str) -> float:
    pattern = re.compile(r'^edge_scans_total\{result="[a-z_]+",school="\d+"\} ([0-9.e+]+)$', re.M)
    return sum(float(value) for value in pattern.findall(metrics_text))


def _rejections(metrics_text: str) -> dict[str, float]:
    pattern = re.compile(r'^edge_scan_rejections_total\{reason="([a-z0-9_]+)"\} ([0-9.e+]+)$', re.M)
    return {reason: float(value) for reason, value in pattern.findall(metrics_text)}


def _metrics(system: System) -> str:
    with system.http() as client:
        return client.get("/metrics").text


def _wait_for(predicate: Callable[[], bool], seconds: float = 15.0) -> None:
    """Poll the bridge over HTTP (no event to await across processes); bounded."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"condition not met within {seconds} s"
            raise TimeoutError(msg)
        time.sleep(0.05)


def test_arbitrary_bytes_and_json_leave_the_bridge_up_and_counted(system: System) -> None:
    reader = system.reader("reader-101")
    sent: list[Any] = []

    @settings(
        max_examples=250,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(payload=PAYLOADS)
    def throw(payload: bytes) -> None:
        reader.publish_raw(payload)
        sent.append(payload)

    throw()
    valid = reader.scan("04A1B20000")  # processed after everything before it (one worker, in order)

    assert valid["result"] == "checked_in"
    with system.http() as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        metrics = client.get("/metrics").text
    assert _scans_counted(metrics) == len(sent) + 1
    rejections = _rejections(metrics)
    assert rejections.get("oversize", 0) >= 1
    assert rejections.get("not_json", 0) >= 1
    assert system.server.running


def test_nested_bracket_payloads_beside_valid_scans_stop_nothing(system: System) -> None:
    # More poisoned messages than the broker keeps in flight to the bridge (the bridge's MQTT
    # v5 Receive Maximum, which replaces mosquitto's max_inflight_messages for it): if each
    # held its slot unacknowledged, ingestion would stop before the last valid scan.
    reader = system.reader("reader-101")
    tags = ["04A1B20000", "04A1B20001", "04A1B20002"]
    poisoned = MQTT_RECEIVE_MAXIMUM + 50
    every = poisoned // len(tags) + 1
    scan_ids: list[str] = []

    for index in range(poisoned):
        reader.publish_raw(NESTED, wait=False)
        if index % every == 0:  # published between them: they share the worker's batches
            scan_ids.append(reader.send(tags[index // every], wait=False))
    answers = [reader.wait_feedback(scan_id) for scan_id in scan_ids]
    rejected = [reader.wait_feedback("") for _ in range(poisoned)]  # no readable scan_id
    later = reader.scan("04A1B20003")

    assert [answer["result"] for answer in answers] == ["checked_in"] * 3
    assert {answer["result"] for answer in rejected} == {"rejected"}
    assert later["result"] == "checked_in"
    with system.http() as client:
        assert client.get("/ready").status_code == 200
    assert _rejections(_metrics(system))["too_deep"] == poisoned
    assert system.server.log_text().count("reason=too_deep") == 1  # rate-limited per device


def test_a_flood_of_qos0_scans_is_dropped_and_counted_not_processed(system: System) -> None:
    reader = system.reader("reader-101")
    topic = reader.topics.scan("reader-101")
    flood = [uuid.uuid4().hex for _ in range(500)]

    for scan_id in flood:
        body = {"scan_id": scan_id, "tag": "04A1B20000", "ts": "2026-01-01T00:00:00Z"}
        reader.client.publish(topic, json.dumps(body).encode(), qos=0)
    _wait_for(lambda: _rejections(_metrics(system)).get("qos0", 0) >= len(flood))
    after = reader.scan("04A1B20001")  # QoS 1, after the flood: the worker is free

    assert after["result"] == "checked_in"
    assert not any(reader.has_feedback(scan_id) for scan_id in flood)
    assert _rejections(_metrics(system))["qos0"] == len(flood)
    assert _scans_counted(_metrics(system)) == 1
    assert system.server.log_text().count("reason=qos0") == 1  # rate-limited per device


def test_an_oversize_scan_is_rejected_and_a_far_oversize_one_never_reaches_the_bridge(
    system: System,
) -> None:
    reader = system.reader("reader-101")
    oversize = json.dumps({"scan_id": "big", "pad": "x" * MAX_PAYLOAD_BYTES}).encode()
    intruder = system.reader("reader-mensa")
    lost = threading.Event()
    intruder.client.on_disconnect = lambda *_args: lost.set()

    reader.publish_raw(oversize)
    answer = reader.wait_feedback("")  # the payload was not read: no scan_id to answer with
    intruder.client.publish(intruder.topics.scan("reader-mensa"), b"x" * 9000, qos=1)
    disconnected = lost.wait(10)
    later = reader.scan("04A1B20000")

    assert answer["result"] == "rejected"
    assert disconnected  # the broker's max_packet_size closed that connection
    assert later["result"] == "checked_in"
    assert _rejections(_metrics(system)) == {"oversize": 1}


def test_the_bridge_answers_a_known_reader_with_rejected_naming_nothing_secret(
    system: System,
) -> None:
    reader = system.reader("reader-101")

    reader.publish_raw(json.dumps({"scan_id": "x-1", "tag": 12345678, "ts": "now"}).encode())
    feedback = reader.wait_feedback("x-1")

    assert feedback["result"] == "rejected"
    log = system.server.log_text()
    assert "Scan rejected device_id=reader-101 reason=bad_tag field=tag" in log
    assert "12345678" not in log  # tags never reach the log
    with httpx.Client(base_url=system.base_url) as client:
        assert client.get("/health").json() == {"status": "ok"}
