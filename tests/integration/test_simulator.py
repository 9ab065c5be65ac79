"""The simulator against the real thing: mosquitto, `edge-bridge serve`, a database file.

The simulator's own model of the afternoon (CONTRACT §3 rules, who is where) is compared with
the bridge's answers and with the open visits in the database; the runs also cut a reader's
connection and SIGKILL the broker, and `python -m simulator scan` is checked for its exit codes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, col, func, select

from edge_bridge.models import Device, EventRecord, ProcessedScan, Visit
from edge_bridge.wire import ScanResult
from simulator.afternoon import Afternoon, RunOptions, run_afternoon
from simulator.broker import BrokerConfig
from simulator.data import SimData, data_from_import
from simulator.reader import Feedback, Reader, ReaderOptions
from simulator.scenario import PlannedScan, PlanOptions, build_plan
from tests.factories import school_document
from tests.integration.conftest import System

pytestmark = pytest.mark.integration

WAIT_SECONDS = 15.0
FAST_READER = ReaderOptions(resend_after_seconds=1.0, max_resends=15)
MAX, EMMA, PAUL = "04A1B20000", "04A1B20001", "04A1B20002"  # students 401, 402, 403


@dataclass
class _Recorder:
    """A FeedbackSink that keeps every answer (paho's threads call it)."""

    answers: list[Feedback] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def show_feedback(self, feedback: Feedback, scan: PlannedScan | None) -> None:
        with self.lock:
            self.answers.append(feedback)


def _school() -> SimData:
    return data_from_import(school_document())


def _broker(system: System) -> BrokerConfig:
    return BrokerConfig.from_url(
        system.broker.url("unused", "unused"),
        prefix=system.settings.mqtt_topic_prefix,
        credentials=system.passwords,
    )


def _where_everyone_is(system: System, data: SimData) -> dict[str, str]:
    """student id → room id of every open visit in the database."""
    room_of_group = {group: room for room, group in data.active_groups.items()}
    with Session(system.engine) as session:
        rows = session.exec(
            select(Visit.student_id, Visit.active_group_id).where(col(Visit.exit_time).is_(None))
        ).all()
    return {str(student): room_of_group[str(group)] for student, group in rows}


def _count(system: System, model: type) -> int:
    with Session(system.engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def _wait_until(condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_fast_afternoon_ends_with_the_database_agreeing_with_the_simulators_model(
    system: System,
) -> None:
    data = _school()
    plan = build_plan(data, PlanOptions(devices=4, students=60, duration_seconds=30, seed=7))
    options = RunOptions(speed=10.0, reader=FAST_READER)

    report = run_afternoon(plan, _broker(system), options=options, sink=_Recorder())

    assert report.mismatches == ()
    assert report.unacknowledged == 0
    assert (report.sent, report.acknowledged) == (report.planned, report.planned)
    assert report.ok
    assert set(report.by_result) >= {
        "checked_in",
        "checked_out",
        "transferred",
        "duplicate",
        "unknown_tag",
        "no_active_group",
        "supervisor_authenticated",
    }
    assert report.present  # some children stay until the end
    assert _where_everyone_is(system, data) == dict(report.present)
    assert _count(system, ProcessedScan) == report.sent


def _device_online(system: System, device_id: str) -> bool | None:
    with Session(system.engine) as session:
        device = session.get(Device, device_id)
        return None if device is None else device.online


def _visits_of(system: System, student_id: int) -> list[tuple[datetime, datetime | None]]:
    with Session(system.engine) as session:
        visits = session.exec(
            select(Visit).where(Visit.student_id == student_id).order_by(col(Visit.id))
        ).all()
        return [(visit.entry_time, visit.exit_time) for visit in visits]


def test_scans_buffered_while_a_reader_is_offline_arrive_in_order_with_their_read_times(
    system: System,
) -> None:
    answers: list[Feedback] = []
    reader = Reader("reader-101", _broker(system), options=FAST_READER, on_feedback=answers.append)
    reader.start()
    try:
        assert reader.wait_connected(WAIT_SECONDS)
        assert _wait_until(lambda: _device_online(system, "reader-101") is True)
        reader.go_offline()
        assert _wait_until(lambda: _device_online(system, "reader-101") is False)  # Last Will
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
        read = [  # (tag, read time): the order decides every result
            (MAX, start),  # checked_in
            (EMMA, start + timedelta(seconds=1)),  # checked_in
            (MAX, start + timedelta(seconds=4.5)),  # checked_out: after the debounce
            (MAX, start + timedelta(seconds=9.25)),  # checked_in again
        ]
        scan_ids = [reader.scan(tag, ts=ts) for tag, ts in read]
        buffered = reader.stats().buffered
        back_online = datetime.now(UTC)

        reader.go_online()

        assert _wait_until(lambda: len(answers) == len(read)), answers
        assert _wait_until(lambda: _device_online(system, "reader-101") is True)
    finally:
        reader.stop()

    assert buffered == len(read)
    assert [a.scan_id for a in answers] == scan_ids
    assert [a.result for a in answers] == [
        ScanResult.CHECKED_IN,
        ScanResult.CHECKED_IN,
        ScanResult.CHECKED_OUT,
        ScanResult.CHECKED_IN,
    ]
    assert _visits_of(system, 401) == [(read[0][1], read[2][1]), (read[3][1], None)]
    assert _visits_of(system, 402) == [(read[1][1], None)]
    with Session(system.engine) as session:
        rows = session.exec(
            select(ProcessedScan).where(ProcessedScan.device_id == "reader-101")
        ).all()
    assert sorted(row.scanned_at for row in rows) == [ts for _, ts in read]
    assert all(row.processed_at >= back_online for row in rows)


def _student_events(system: System) -> list[tuple[str, str]]:
    """(type, student id) of every student event, in event id order."""
    with Session(system.engine) as session:
        records = session.exec(
            select(EventRecord)
            .where(col(EventRecord.type).in_(["student_checkin", "student_checkout"]))
            .order_by(col(EventRecord.id))
        ).all()
        return [(record.type, json.loads(record.data)["student_id"]) for record in records]


def _unanswered(afternoon: Afternoon) -> int:
    return sum(stats.pending for stats in afternoon.fleet.stats().values())


def _resends(afternoon: Afternoon) -> int:
    return sum(stats.resends for stats in afternoon.fleet.stats().values())


def test_every_scan_has_exactly_one_effect_when_the_broker_is_killed_mid_afternoon(
    make_system: Callable[..., System],
) -> None:
    system = make_system(persistence=True)
    data = _school()
    plan = build_plan(data, PlanOptions(devices=4, students=60, duration_seconds=30, seed=11))
    recorder = _Recorder()
    afternoon = Afternoon(
        plan, _broker(system), options=RunOptions(speed=3.0, reader=FAST_READER), sink=recorder
    )
    reports = []
    runner = threading.Thread(target=lambda: reports.append(afternoon.run()), daemon=True)
    runner.start()
    assert _wait_until(lambda: len(recorder.answers) >= len(plan.scans) // 3)
    bridge_pid = system.server._process.pid  # type: ignore[union-attr]

    # The bridge stalls, so the broker holds scans it has already acknowledged to the
    # readers; the SIGKILL loses them. Only the readers' resends can bring them back.
    os.kill(bridge_pid, signal.SIGSTOP)
    try:
        assert _wait_until(lambda: _unanswered(afternoon) >= 5 and _resends(afternoon) > 0)
        system.broker.kill()
        system.broker.start()
    finally:
        os.kill(bridge_pid, signal.SIGCONT)
    runner.join(60)

    assert not runner.is_alive()
    (report,) = reports
    assert report.mismatches == ()
    assert report.unacknowledged == 0
    assert report.sent == report.planned
    assert _count(system, ProcessedScan) == report.sent
    results = report.by_result
    events = _student_events(system)
    checkins = [student for kind, student in events if kind == "student_checkin"]
    checkouts = [student for kind, student in events if kind == "student_checkout"]
    assert len(checkins) == results["checked_in"] + results["transferred"]
    assert len(checkouts) == results["checked_out"] + results["transferred"]
    assert _count(system, Visit) == len(checkins)
    for student in {student for _, student in events}:  # in, out, in, out … per student
        kinds = [kind for kind, s in events if s == student]
        assert kinds[::2] == ["student_checkin"] * len(kinds[::2]), (student, kinds)
        assert kinds[1::2] == ["student_checkout"] * len(kinds[1::2]), (student, kinds)
    assert _where_everyone_is(system, data) == dict(report.present)


def _scan_command(system: System, device_id: str, tag: str, *, timeout: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "simulator",
        "scan",
        "--device",
        device_id,
        "--tag",
        tag,
        "--mqtt-url",
        f"mqtt://{system.broker.host}:{system.broker.port}",
        "--prefix",
        system.settings.mqtt_topic_prefix,
        "--password",
        system.passwords[device_id],
        "--timeout",
        str(timeout),
        "--resend-after",
        "1",
        "--no-color",
    ]


def _scan_all(
    system: System, scans: list[tuple[str, str]], *, timeout: float = 10.0
) -> list[tuple[int, str, str]]:
    """Run `python -m simulator scan` once per (device, tag), in parallel (one per device)."""
    processes = [
        subprocess.Popen(
            _scan_command(system, device_id, tag, timeout=timeout),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for device_id, tag in scans
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=timeout + 20)
        results.append((process.returncode, out, err))
    return results


def test_the_scan_command_exits_by_result_0_success_1_refused_2_no_answer(
    make_system: Callable[..., System],
) -> None:
    system = make_system(scan_debounce_seconds=60)  # the repeat below is always a duplicate
    nowak = "A1B2C3D6"

    first = _scan_all(
        system,
        [
            ("reader-101", MAX),
            ("reader-turnhalle", nowak),
            ("reader-mensa", EMMA),
            ("reader-spare", PAUL),
        ],
    )
    second = _scan_all(
        system,
        [("reader-101", MAX), ("reader-turnhalle", MAX), ("reader-mensa", "DEADBEEF00")],
    )
    system.server.stop()
    unanswered = _scan_all(system, [("reader-101", EMMA)], timeout=2.0)

    codes = [code for code, _, _ in [*first, *second, *unanswered]]
    assert codes == [0, 0, 1, 1, 0, 0, 1, 2]
    printed = [out for _, out, _ in [*first, *second]]
    expected = [
        ("Hallo Max!", "(checked_in)"),
        ("Betreuung: Frau Nowak", "(supervisor_authenticated)"),
        ("[err]", "(no_active_group)"),
        ("[err]", "(rejected)"),
        ("[dup]", "(duplicate)"),
        ("Gewechselt von Raum 101 zu Turnhalle!", "(transferred)"),
        ("Karte unbekannt", "(unknown_tag)"),
    ]
    for out, (text, result) in zip(printed, expected, strict=True):
        assert text in out and result in out, out
    assert unanswered[0][1] == ""
    assert "reader-101: no feedback within 2 s" in unanswered[0][2]
