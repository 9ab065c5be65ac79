"""SIGTERM mid-stream: the bridge stops taking scans, finishes the batch in flight, acknowledges
only what is committed, closes its SSE streams and exits within 5 s; after a restart the broker
redelivers every unanswered scan and each gets exactly one effect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlmodel import Session, select

from edge_bridge.models import ProcessedScan
from edge_bridge.tuning import SSE_SHUTDOWN_GRACE_SECONDS
from tests.factories import school_document
from tests.integration.conftest import System
from tests.support.raw_sse import RawSseClient
from tests.support.scanstream import ScanStream, SentScan, assert_exactly_one_effect_each
from tests.support.sse import SseStream

pytestmark = pytest.mark.integration

STUDENT_TAGS = [student["tag"] for student in school_document()["students"]]
DEVICES = ["reader-101", "reader-turnhalle", "reader-mensa"]
SCANS = 6000  # an upper bound: the publisher is stopped soon after the bridge exits
CHUNK = 150  # scans per PUBLISH_INTERVAL_SECONDS: ~7500/s, more than the bridge takes
PUBLISH_INTERVAL_SECONDS = 0.02
NEVER = 1e9  # readers do not re-publish here: only the broker's redelivery can answer a scan


class _Publisher(threading.Thread):
    """Publishes the planned scans in chunks at a steady rate until told to finish."""

    def __init__(self, scans: ScanStream) -> None:
        super().__init__(daemon=True)
        self.scans = scans
        self.sent = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while self.sent < len(self.scans.scans) and not self._stop_event.is_set():
            self.scans.publish(self.sent, self.sent + CHUNK)
            self.sent = min(self.sent + CHUNK, len(self.scans.scans))
            self._stop_event.wait(PUBLISH_INTERVAL_SECONDS)

    def finish(self) -> int:
        """Stop publishing; returns how many scans were published."""
        self._stop_event.set()
        self.join(5)
        return self.sent


def _stored(system: System) -> dict[tuple[str, str], str]:
    with Session(system.engine) as session:
        return {(r.device_id, r.scan_id): r.result for r in session.exec(select(ProcessedScan))}


def _answered_after_exit(scans: ScanStream, *, expected: int) -> dict[tuple[str, str], SentScan]:
    """The scans answered by the stopped bridge; feedback still in the broker gets 2 s."""
    deadline = time.monotonic() + 2
    while scans.collect() < expected and time.monotonic() < deadline:
        time.sleep(0.05)  # feedback already sent by the bridge is on its way from the broker
    return {(s.device_id, s.scan_id): s for s in scans.scans if s.feedback}


def _drain_until_closed(stream: SseStream) -> bool:
    """True when the stream ends (EOF), with no gap of more than 2 s between frames."""
    try:
        while True:
            stream.next(timeout=2)
    except EOFError:
        return True
    except TimeoutError:
        return False


def test_sigterm_mid_stream_exits_in_time_and_loses_no_scan(
    make_system: Callable[..., System],
) -> None:
    # Arrange: open streams for three staff members and hundreds of scans in flight.
    system = make_system(scan_debounce_seconds=0)
    streams = [system.connected_stream(staff_id) for staff_id in (1, 2, 3)]
    readers = {device: system.reader(device) for device in DEVICES}
    scans = ScanStream(readers, STUDENT_TAGS, count=SCANS, seed=7)
    publisher = _Publisher(scans)
    publisher.start()
    scans.wait_answered(50, timeout=30, resend_after=NEVER)

    # Act: SIGTERM while scans keep arriving.
    exit_seconds = system.server.stop()
    sent = publisher.finish()
    stored_at_exit = _stored(system)
    answered_before = _answered_after_exit(scans, expected=len(stored_at_exit))
    closed = [_drain_until_closed(stream) for stream in streams]
    log = system.server.log_text()

    # Assert: quick, clean exit; everything answered was committed with that very result.
    assert exit_seconds < 5, log[-2000:]
    assert closed == [True, True, True]
    assert "Bridge stopped" in log
    assert "Traceback" not in log
    assert 50 <= len(answered_before) < sent  # the stop really happened mid-stream
    assert set(answered_before) == set(stored_at_exit)  # the batch in flight was finished
    for key, scan in answered_before.items():
        assert scan.feedback is not None
        assert stored_at_exit[key] == scan.feedback["result"]

    # Act: restart; the broker redelivers what was not acknowledged.
    system.server.start(wait_ready=True)
    scans.wait_answered(sent, timeout=60, resend_after=NEVER)

    # Assert: every scan answered once, with one stored result, and one effect each.
    assert_exactly_one_effect_each(system.engine, scans, sent=sent)


def test_sigterm_ends_every_open_stream_with_a_complete_response_within_the_grace_period(
    make_system: Callable[..., System],
) -> None:
    # Arrange: three idle streams, read on the wire (the final chunk is visible there).
    system = make_system()
    clients = [
        RawSseClient(
            "127.0.0.1", system.server.port, "/api/sse/events", headers=system.auth(staff_id)
        )
        for staff_id in (1, 2, 3)
    ]
    for client in clients:
        client.read_until(b"event: connected", 10)

    # Act: SIGTERM, then see when each response ends.
    signalled = time.monotonic()
    stopper = threading.Thread(target=system.server.stop)
    stopper.start()
    ended_after = []
    for client in clients:
        client.read_until_end(SSE_SHUTDOWN_GRACE_SECONDS)
        ended_after.append(time.monotonic() - signalled)
    stopper.join(10)

    # Assert: every response ended with its final chunk, well before uvicorn gives up.
    assert [client.complete for client in clients] == [True, True, True]
    assert max(ended_after) < SSE_SHUTDOWN_GRACE_SECONDS
    assert not stopper.is_alive()
