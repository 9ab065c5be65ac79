"""`record_scans` with two schools in one database: a tag is looked up in the reader's school.

School 1 is the fixture school; school 2 (tests/support/scan_nord.py) reuses a school-1
student's and a staff member's tag values and has a student whose tag school 1 does not know.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from edge_bridge.models import Device, EventRecord, Supervision, Visit
from edge_bridge.scans import Scan, record_scans
from edge_bridge.store import Store, Tx
from edge_bridge.visits import Outcome
from edge_bridge.wire import ScanResult
from edge_ops.importer import import_data
from tests.support.scan_nord import NORD_ONLY_TAG, SHARED_STAFF_TAG, SHARED_TAG, nord_document

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def two_schools(school_engine: Engine) -> Engine:
    import_data(school_engine, json.dumps(nord_document()).encode())
    return school_engine


def _scan(device_id: str, tag: str, *, seconds: float = 0) -> Scan:
    ts = NOW + timedelta(seconds=seconds)
    return Scan(device_id, f"{device_id}-{tag}-{seconds}", tag, ts, ts)


def _record(engine: Engine, scans: list[Scan]) -> list[Outcome]:
    def work(tx: Tx) -> list[Outcome]:
        devices = {d.id: d for d in tx.session.exec(select(Device)).all()}
        return record_scans(
            tx, [(scan, devices[scan.device_id]) for scan in scans], debounce_seconds=3
        )

    return Store(engine).write_blocking(work)


def _open_visits(engine: Engine) -> dict[int, int]:
    """student id → active group of their open visit."""
    with Session(engine) as session:
        rows = session.exec(
            select(Visit.student_id, Visit.active_group_id).where(col(Visit.exit_time).is_(None))
        ).all()
    return dict(rows)


def _events(engine: Engine) -> list[tuple[str, int | None, str | None]]:
    """(type, school, student id) of every event in the log, in id order."""
    with Session(engine) as session:
        rows = session.exec(select(EventRecord).order_by(col(EventRecord.id))).all()
    return [(row.type, row.school_id, json.loads(row.data).get("student_id")) for row in rows]


def test_a_tag_known_only_in_another_school_is_unknown_at_this_schools_reader(
    two_schools: Engine,
) -> None:
    [outcome] = _record(two_schools, [_scan("reader-101", NORD_ONLY_TAG)])

    assert outcome == Outcome(ScanResult.UNKNOWN_TAG, "Karte unbekannt", None)
    assert _open_visits(two_schools) == {}
    assert _events(two_schools) == []


def test_a_reused_tag_is_each_readers_own_schools_student(two_schools: Engine) -> None:
    at_nord, at_101 = _record(
        two_schools, [_scan("reader-nord-1", SHARED_TAG), _scan("reader-101", SHARED_TAG)]
    )

    assert (at_nord.result, at_nord.student_name) == (ScanResult.CHECKED_IN, "Lina Berg")
    assert (at_101.result, at_101.student_name) == (ScanResult.CHECKED_IN, "Max Muster")
    assert _open_visits(two_schools) == {501: 223, 401: 124}  # no transfer across schools
    visit_events = [e for e in _events(two_schools) if e[0] == "student_checkin"]
    assert visit_events == [("student_checkin", 2, "501"), ("student_checkin", 1, "401")]


def test_the_same_tag_at_two_schools_readers_is_not_a_duplicate(two_schools: Engine) -> None:
    outcomes = _record(
        two_schools,
        [_scan("reader-101", SHARED_TAG), _scan("reader-nord-1", SHARED_TAG, seconds=1)],
    )

    assert [o.result for o in outcomes] == [ScanResult.CHECKED_IN, ScanResult.CHECKED_IN]


def test_a_reused_staff_tag_makes_the_readers_schools_staff_member_supervisor(
    two_schools: Engine,
) -> None:
    [outcome] = _record(two_schools, [_scan("reader-nord-1", SHARED_STAFF_TAG)])

    assert (outcome.result, outcome.message) == (
        ScanResult.SUPERVISOR_AUTHENTICATED,
        "Betreuung: Herr Nordmann",
    )
    with Session(two_schools) as session:
        supervisors = session.exec(
            select(Supervision.staff_id).where(
                Supervision.active_group_id == 223, col(Supervision.ended_at).is_(None)
            )
        ).all()
    assert sorted(supervisors) == [21, 22]  # Herr Nordmann joined; Frau Schmidt (1) did not
    [update] = [e for e in _events(two_schools) if e[0] == "activity_update"]
    assert update[1] == 2


def test_a_tag_of_another_school_in_a_mixed_batch_stays_unknown(two_schools: Engine) -> None:
    outcomes = _record(
        two_schools,
        [_scan("reader-nord-1", NORD_ONLY_TAG), _scan("reader-101", NORD_ONLY_TAG, seconds=1)],
    )

    assert [(o.result, o.student_name) for o in outcomes] == [
        (ScanResult.CHECKED_IN, "Ole Strand"),
        (ScanResult.UNKNOWN_TAG, None),
    ]
    assert _open_visits(two_schools) == {502: 223}
    assert {school for _type, school, _student in _events(two_schools)} == {2}
