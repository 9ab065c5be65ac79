"""A flat-out burst larger than the hand-over queue: reading pauses, nothing is dropped.

Mosquitto 2.0 does not hold a client to its Receive Maximum once the client acknowledges:
one PUBACK moves the client's whole broker-side queue into flight. So a burst of three
queues' worth of scans reaches the bridge unacknowledged; the bridge must stop reading the
socket instead of dropping QoS 1 messages (each dropped one held a broker in-flight slot and
waited for the reader's resend).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sqlmodel import Session, func, select

from edge_bridge.models import ProcessedScan
from edge_bridge.tuning import MQTT_RECEIVE_MAXIMUM
from tests.factories import school_document
from tests.integration.conftest import System
from tests.support.scanstream import ScanStream

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDENT_TAGS = [s["tag"] for s in school_document()["students"]]
DEVICES = [d["id"] for d in school_document()["devices"] if d["active"]]
QUEUE_SIZE = MQTT_RECEIVE_MAXIMUM  # the smallest the bridge accepts
NO_RESEND = 600.0  # a dropped scan would wait for a resend: here none may need one
BURSTS = 3


def _dropped_queue_full(system: System) -> float:
    with system.http() as client:
        text = client.get("/metrics").text
    pattern = r'^edge_mqtt_messages_dropped_total\{reason="queue_full"\} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_burst_of_three_queues_of_scans_is_processed_without_a_drop(
    make_system: Callable[..., System],
) -> None:
    system = make_system(scan_debounce_seconds=0, env={"INGEST_QUEUE_SIZE": str(QUEUE_SIZE)})
    readers = {device: system.reader(device) for device in DEVICES}
    count = 3 * QUEUE_SIZE
    sent = 0
    # Whether a burst overflows depends on how fast the worker drains it: burst again (at most
    # BURSTS times) until one did, checking every burst the same way.
    for burst in range(BURSTS):
        stream = ScanStream(readers, STUDENT_TAGS, count=count, seed=7 + burst)

        stream.publish(0, count)
        answered = stream.wait_answered(count, timeout=60, resend_after=NO_RESEND)
        sent += count

        assert answered == count
        assert all(scan.sends == 1 for scan in stream.scans)  # none needed a resend
        assert _dropped_queue_full(system) == 0
        if "MQTT reading paused" in system.server.log_text():
            break
    assert "MQTT reading paused" in system.server.log_text()  # a burst did overflow
    with Session(system.engine) as session:
        rows = session.exec(select(func.count()).select_from(ProcessedScan)).one()
    assert rows == sent  # exactly one effect per scan
