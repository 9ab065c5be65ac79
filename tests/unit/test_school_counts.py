"""edge_bridge/queries/schools.py: a school's counts are its own, next to another school."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, update

from edge_bridge.db import transaction
from edge_bridge.models import Device, ProcessedScan, Visit
from edge_bridge.queries import SchoolScope
from edge_bridge.queries.schools import SchoolCounts, school_counts
from tests.support.nord import NORDLAUF, import_nord

BERLIN = ZoneInfo("Europe/Berlin")
LAST_SCAN = datetime(2024, 5, 6, 14, 30, tzinfo=UTC)


def _visit(student_id: int, group_id: int, *, closed: bool = False) -> Visit:
    entered = datetime.now(UTC) - timedelta(minutes=30)
    return Visit(
        student_id=student_id,
        active_group_id=group_id,
        entry_time=entered,
        exit_time=entered + timedelta(minutes=5) if closed else None,
    )


def _scan(device_id: str, scan_id: str, at: datetime) -> ProcessedScan:
    return ProcessedScan(
        device_id=device_id,
        scan_id=scan_id,
        result="checked_in",
        message="ok",
        scanned_at=at,
        processed_at=at,
    )


def test_each_school_counts_only_its_own_rows(school_engine: Engine) -> None:
    import_nord(school_engine)
    with transaction(school_engine) as session:
        session.add_all(
            [
                _visit(2001, NORDLAUF),
                _visit(2002, NORDLAUF, closed=True),
                _visit(401, 124),  # school 1's open visit
                _scan("nord-1", "s-1", LAST_SCAN - timedelta(hours=1)),
                _scan("nord-1", "s-2", LAST_SCAN),
                _scan("reader-101", "s-3", LAST_SCAN + timedelta(hours=1)),  # school 1's, later
            ]
        )
        session.exec(update(Device).where(Device.id == "nord-1").values(online=True))  # type: ignore[call-overload]

    with Session(school_engine) as session:
        nord = school_counts(session, SchoolScope(2, BERLIN))
        fixture = school_counts(session, SchoolScope(1, BERLIN))
        empty = school_counts(session, SchoolScope(3, BERLIN))  # no such school: all zero

    assert nord == SchoolCounts(
        rooms=2,
        students=2,
        staff=2,
        devices=2,
        devices_online=1,
        open_visits=1,
        last_scan_at=LAST_SCAN,
    )
    assert fixture == SchoolCounts(
        rooms=3,
        students=60,
        staff=4,
        devices=4,
        devices_online=0,
        open_visits=1,
        last_scan_at=LAST_SCAN + timedelta(hours=1),
    )
    assert empty == SchoolCounts(0, 0, 0, 0, 0, 0, None)
