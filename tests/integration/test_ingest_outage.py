"""A database that goes away for a while loses no scan and rejects none.

While PostgreSQL is down or SQLite's write lock is held by someone else for longer than the
busy timeout, scans wait unacknowledged and unanswered, `/ready` says the database is
unreachable, and once it is back every scan ends with exactly one effect.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import POSTGRES_ADMIN_URL
from tests.factories import school_document
from tests.integration.conftest import System
from tests.support.pgcluster import PostgresServer
from tests.support.scanstream import ScanStream, assert_exactly_one_effect_each

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDENT_TAGS = [s["tag"] for s in school_document()["students"]]
DEVICES = ["reader-101", "reader-turnhalle", "reader-mensa"]
NO_RESEND = 600.0  # readers would re-publish after a timeout; here nothing may need it


def _ready(system: System) -> tuple[int, dict[str, object]]:
    with system.http() as client:
        response = client.get("/ready")
    return response.status_code, response.json()


def _wait_until_ready_says(system: System, status: int, *, seconds: float) -> dict[str, object]:
    """Poll /ready (another process: no event to await) until it answers `status`; bounded."""
    deadline = time.monotonic() + seconds
    while True:
        code, body = _ready(system)
        if code == status:
            return body
        if time.monotonic() > deadline:
            msg = f"/ready did not answer {status} within {seconds} s (last: {code} {body})"
            raise TimeoutError(msg)
        time.sleep(0.1)


def _assert_none_rejected(stream: ScanStream) -> None:
    results = Counter(scan.feedback["result"] for scan in stream.scans if scan.feedback)
    assert results["rejected"] == 0, results


@contextmanager
def _sqlite_write_lock(database_url: str) -> Iterator[None]:
    """Another connection holds the write lock (`BEGIN IMMEDIATE`) until the block ends."""
    connection = sqlite3.connect(database_url.split(":///", 1)[1], isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


@pytest.mark.skipif(POSTGRES_ADMIN_URL is not None, reason="an SQLite lock needs SQLite")
def test_scans_wait_out_a_sqlite_write_lock_longer_than_the_busy_timeout(
    make_system: Callable[..., System],
) -> None:
    system = make_system(scan_debounce_seconds=0)
    readers = {device: system.reader(device) for device in DEVICES}
    stream = ScanStream(readers, STUDENT_TAGS, count=60, seed=3)
    stream.publish(0, 20)
    stream.wait_answered(20, timeout=30)

    with _sqlite_write_lock(system.settings.database_url):
        stream.publish(20, 60)
        # The busy timeout (10 s) runs out: a transient error, not a bad scan.
        body = _wait_until_ready_says(system, 503, seconds=40)
        answered_while_locked = stream.collect()
    stream.wait_answered(60, timeout=60, resend_after=NO_RESEND)

    assert body["checks"] == {"database": "unreachable", "mqtt": "ok"}
    assert answered_while_locked == 20  # nothing was answered while the lock was held
    _assert_none_rejected(stream)
    assert_exactly_one_effect_each(system.engine, stream)
    assert _ready(system)[0] == 200
    assert "Database unavailable, scans wait unacknowledged" in system.server.log_text()


@pytest.mark.skipif(POSTGRES_ADMIN_URL is None, reason="needs EDGE_TEST_POSTGRES_URL")
def test_a_postgresql_restart_mid_stream_gives_every_scan_exactly_one_effect(
    make_system: Callable[..., System],
) -> None:
    assert POSTGRES_ADMIN_URL is not None
    server = PostgresServer(POSTGRES_ADMIN_URL)
    system = make_system(scan_debounce_seconds=0)
    readers = {device: system.reader(device) for device in DEVICES}
    stream = ScanStream(readers, STUDENT_TAGS, count=600, seed=4)

    stream.publish(0, 300)
    answered_before = stream.wait_answered(50, timeout=60, resend_after=NO_RESEND)
    server.stop()
    try:
        body = _wait_until_ready_says(system, 503, seconds=20)
        stream.publish(300, 600)
        # Keep the server down while the bridge retries a few times (0.1 + 0.2 + 0.4 + 0.8 s);
        # bounded, and without failing here, so a bridge that does not retry fails below.
        _wait_for_retries(system, 4, seconds=15)
        stream.collect()
        answered_while_down = [scan.feedback is not None for scan in stream.scans[300:]]
    finally:
        server.start()
    stream.wait_answered(600, timeout=120, resend_after=NO_RESEND)

    assert answered_before >= 50  # scans went through before the outage ...
    assert not any(answered_while_down)  # ... and none published during it was answered
    assert body["checks"]["database"] == "unreachable"  # type: ignore[index]
    _assert_none_rejected(stream)
    assert_exactly_one_effect_each(system.engine, stream)
    _wait_until_ready_says(system, 200, seconds=20)
    assert re.search(r"Database available again after_s=(?:[1-9]|0\.[5-9])", _log(system))


def _log(system: System) -> str:
    return system.server.log_text()


def _wait_for_retries(system: System, count: int, *, seconds: float) -> bool:
    """Poll the bridge's retry counter until it reaches `count`; False after `seconds`."""
    pattern = re.compile(r"^edge_scan_batch_retries_total ([0-9.e+]+)$", re.M)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with system.http() as client:
            found = pattern.search(client.get("/metrics").text)
        if found and float(found.group(1)) >= count:
            return True
        time.sleep(0.1)
    return False
