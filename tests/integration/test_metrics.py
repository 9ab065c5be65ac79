"""`GET /metrics` (issue 6): every Prometheus series is there, and each one moves when it should."""

from __future__ import annotations

import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from edge_bridge.models import EventLogState
from tests.integration.conftest import System

pytestmark = pytest.mark.integration

MAX = "04A1B20000"  # student 401, checks in to group 124 at reader-101
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

SERIES = [
    "edge_sse_clients_connected",
    "edge_events_broadcast_total",
    "edge_sse_slow_disconnects_total",
    "edge_sse_replays_total",
    "edge_sse_resyncs_total",
    "edge_scans_total",
    "edge_scan_rejections_total",
    "edge_scan_to_broadcast_seconds_bucket",
    "edge_scan_to_broadcast_seconds_count",
    "edge_mqtt_connected",
    "edge_readers_online",
    "edge_open_visits",
    "edge_sse_clients_by_school",
]


def _scrape(system: System) -> Samples:
    with system.http() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _eventually(probe: Callable[[], Samples], check: Callable[[Samples], bool]) -> Samples:
    """Scrape until `check` accepts the samples (the bridge updates some values in passing)."""
    deadline = time.monotonic() + 10
    while True:
        samples = probe()
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_metrics_list_every_series_and_count_scans_rejections_events_and_streams(
    system: System,
) -> None:
    before = _scrape(system)
    with Session(system.engine) as session:  # the log says it pruned everything up to id 1000
        session.add(EventLogState(id=1, pruned_through_id=1000))
        session.commit()
    reader = system.reader("reader-101")

    # Act: a stream that must resync, a scan, a stream that replays it, a bad payload.
    resyncing = system.connected_stream(1, last_event_id="5")
    resync = resyncing.next_event()
    feedback = reader.scan(MAX)
    replaying = system.connected_stream(1, last_event_id="0")
    replayed = replaying.next_event()
    reader.publish_raw(b'{"scan_id": "bad-1", "tag": "xyz", "ts": "2026-11-26T13:30:00Z"}')
    rejected = reader.wait_feedback("bad-1")
    status = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="reader-turnhalle")
    status.username_pw_set("reader-turnhalle", system.passwords["reader-turnhalle"])
    status.connect(system.broker.host, system.broker.port)
    status.loop_start()
    topic = f"{system.settings.mqtt_topic_prefix}/readers/reader-turnhalle/status"
    try:
        status.publish(topic, b'{"online": true}', qos=1, retain=True).wait_for_publish(5)
        after = _eventually(
            lambda: _scrape(system), lambda s: _value(s, "edge_readers_online") >= 1
        )
    finally:
        status.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        status.disconnect()
        status.loop_stop()

    assert (resync.event, feedback["result"], replayed.event) == (
        "resync",
        "checked_in",
        "student_checkin",
    )
    assert rejected["result"] == "rejected"
    names = {name for name, _labels in after}
    assert [name for name in SERIES if name not in names] == []

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("edge_scans_total", result="checked_in", school="1") == 1
    assert delta("edge_scans_total", result="rejected", school="1") == 1
    assert delta("edge_scan_rejections_total", reason="bad_tag") == 1
    assert delta("edge_scan_to_broadcast_seconds_count") == 1
    assert delta("edge_events_broadcast_total", event_type="student_checkin") == 1
    assert delta("edge_sse_replays_total") == 1
    assert delta("edge_sse_resyncs_total") == 1
    assert _value(after, "edge_sse_slow_disconnects_total") == 0
    assert _value(after, "edge_sse_clients_connected") == 2
    assert _value(after, "edge_mqtt_connected") == 1
    assert _value(after, "edge_readers_online") == 1
    assert _value(after, "edge_open_visits", school="1") == 1
    assert _value(after, "edge_sse_clients_by_school", school="1") == 2
