"""Garbage on the scan topic: the bridge stays up, counts every message, and still works."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=4097, max_size=6000),
    JSON.map(lambda value: json.dumps(value).encode()),
    SCAN_LIKE.map(lambda value: json.dumps(value).encode()),
)


def _scans_counted(metrics_text: str) -> float:
    pattern = re.compile(r'^edge_scans_total\{result="[a-z_]+"\} ([0-9.e+]+)$', re.M)
    return sum(float(value) for value in pattern.findall(metrics_text))


def _rejections(metrics_text: str) -> dict[str, float]:
    pattern = re.compile(r'^edge_scan_rejections_total\{reason="([a-z_]+)"\} ([0-9.e+]+)$', re.M)
    return {reason: float(value) for reason, value in pattern.findall(metrics_text)}


def test_arbitrary_bytes_and_json_leave_the_bridge_up_and_counted(system: System) -> None:
    reader = system.reader("reader-101")
    sent: list[Any] = []

    @settings(
        max_examples=150,
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
