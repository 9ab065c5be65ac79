"""Exactly one effect per scan through a bridge SIGKILL and a broker restart mid-stream, and
a reused scan_id told from a redelivery."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, func, select

from edge_bridge.models import ProcessedScan, Visit
from tests.factories import school_document
from tests.integration.conftest import System
from tests.support.scanstream import ScanStream, assert_exactly_one_effect_each

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDENT_TAGS = [s["tag"] for s in school_document()["students"]]
DEVICES = ["reader-101", "reader-turnhalle", "reader-mensa"]


def test_a_bridge_killed_mid_stream_gives_every_scan_exactly_one_effect(
    make_system: Callable[..., System],
) -> None:
    system = make_system(scan_debounce_seconds=0)
    readers = {device: system.reader(device) for device in DEVICES}
    stream = ScanStream(readers, STUDENT_TAGS, count=2000)

    stream.publish(0, 2000)
    answered_before_kill = stream.wait_answered(300, timeout=60)
    system.server.kill()  # SIGKILL: no shutdown code runs
    system.server.start(wait_ready=True)
    stream.wait_answered(2000, timeout=120)

    assert answered_before_kill < 2000  # the kill really happened mid-stream
    assert_exactly_one_effect_each(system.engine, stream)


def test_a_broker_restart_mid_stream_loses_nothing(make_system: Callable[..., System]) -> None:
    system = make_system(scan_debounce_seconds=0, persistence=True)
    readers = {device: system.reader(device) for device in DEVICES}
    stream = ScanStream(readers, STUDENT_TAGS, count=600, seed=2)

    stream.publish(0, 300)
    answered_before_restart = stream.wait_answered(100, timeout=60)
    system.broker.stop()
    system.broker.start()
    stream.publish(300, 600)
    stream.wait_answered(600, timeout=120)

    assert answered_before_restart < 600
    assert_exactly_one_effect_each(system.engine, stream)
    system.server.wait_ready(timeout_seconds=20)  # the bridge reconnected by itself


def test_a_scan_id_reused_for_another_card_gets_its_own_effect_and_a_redelivery_none(
    system: System,
) -> None:
    # A reader whose counter restarted after a reboot sends scan_id "1" again for another
    # card; a redelivery of the first scan (same tag, same ts) still repeats its feedback.
    first, second = school_document()["students"][:2]
    reader = system.reader("reader-101")
    read_at = datetime.now(UTC)

    original = reader.scan(first["tag"], scan_id="1", ts=read_at)
    redelivery = reader.scan(first["tag"], scan_id="1", ts=read_at)
    reused = reader.scan(second["tag"], scan_id="1", ts=read_at + timedelta(seconds=20))

    assert original["result"] == "checked_in"
    assert redelivery == original
    assert reused["result"] == "checked_in"
    assert reused["student_name"] == f"{second['first_name']} {second['last_name']}"
    with Session(system.engine) as session:
        visits = session.exec(select(func.count()).select_from(Visit)).one()
        row = session.exec(select(ProcessedScan)).one()
    assert visits == 2
    assert row.tag == second["tag"]
    log = system.server.log_text()
    assert log.count("Scan id reused device_id=reader-101 scan_id=1") == 1
    assert first["tag"] not in log and second["tag"] not in log
