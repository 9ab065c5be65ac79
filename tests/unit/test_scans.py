"""A batch of scans in one transaction: idempotency, reused ids, order, debounce, skew, pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from edge_bridge.models import Device, EventRecord, ProcessedScan, Visit
from edge_bridge.scans import Scan, prune_processed_scans, record_scans
from edge_bridge.store import Store
from edge_bridge.wire import ScanResult
from tests.factories import VISIT_EVENT_TYPES

MAX = "04A1B20000"
LENA = "04A1B20001"
NOW = datetime.now(UTC).replace(microsecond=0)


def _scan(
    device: str, scan_id: str, tag: str = MAX, *, seconds: float = 0, later: float = 0
) -> Scan:
    """Read `seconds` after NOW; arrives `later` seconds after that (a redelivery's delay)."""
    ts = NOW + timedelta(seconds=seconds)
    return Scan(device, scan_id, tag, ts, ts + timedelta(seconds=later))


def _record(engine: Engine, scans: list[Scan], *, debounce: float = 3) -> list[ScanResult]:
    def work(tx):  # type: ignore[no-untyped-def]
        devices = {d.id: d for d in tx.session.exec(select(Device)).all()}
        items = [(scan, devices[scan.device_id]) for scan in scans]
        return record_scans(tx, items, debounce_seconds=debounce)

    return [outcome.result for outcome in Store(engine).write_blocking(work)]


def _group_events(engine: Engine) -> int:
    """Visit events in the log (check-ins and check-outs)."""
    with Session(engine) as session:
        return session.exec(
            select(func.count())
            .select_from(EventRecord)
            .where(col(EventRecord.type).in_(VISIT_EVENT_TYPES))
        ).one()


def _count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_in_out_in_within_one_batch_applies_in_order(school_engine: Engine) -> None:
    results = _record(
        school_engine,
        [
            _scan("reader-101", "a"),
            _scan("reader-101", "b", seconds=4),
            _scan("reader-101", "c", seconds=8),
        ],
    )

    assert results == [ScanResult.CHECKED_IN, ScanResult.CHECKED_OUT, ScanResult.CHECKED_IN]
    with Session(school_engine) as session:
        visits = session.exec(select(Visit).order_by(col(Visit.id))).all()
    assert [(v.exit_time is None) for v in visits] == [False, True]
    assert _group_events(school_engine) == 3


def test_a_transfer_within_one_batch_keeps_one_open_visit(school_engine: Engine) -> None:
    results = _record(
        school_engine, [_scan("reader-101", "a"), _scan("reader-turnhalle", "b", seconds=1)]
    )

    assert results == [ScanResult.CHECKED_IN, ScanResult.TRANSFERRED]
    with Session(school_engine) as session:
        open_groups = session.exec(
            select(Visit.active_group_id).where(col(Visit.exit_time).is_(None))
        ).all()
    assert open_groups == [123]


def test_the_same_scan_id_twice_in_a_batch_has_one_effect(school_engine: Engine) -> None:
    results = _record(school_engine, [_scan("reader-101", "a"), _scan("reader-101", "a", later=5)])

    assert results == [ScanResult.CHECKED_IN, ScanResult.CHECKED_IN]
    assert _count(school_engine, ProcessedScan) == 1
    assert _count(school_engine, Visit) == 1


def test_a_redelivery_in_a_later_batch_repeats_the_stored_outcome(school_engine: Engine) -> None:
    _record(school_engine, [_scan("reader-101", "a")])

    again = _record(school_engine, [_scan("reader-101", "a", later=600)])

    assert again == [ScanResult.CHECKED_IN]
    assert _count(school_engine, Visit) == 1


def test_a_redelivery_with_its_reader_time_a_little_off_is_still_a_redelivery(
    school_engine: Engine,
) -> None:
    _record(school_engine, [_scan("reader-101", "a")])

    again = _record(school_engine, [_scan("reader-101", "a", seconds=2, later=60)])

    assert again == [ScanResult.CHECKED_IN]
    assert _count(school_engine, Visit) == 1


def test_a_reused_scan_id_with_another_tag_is_a_new_scan(
    school_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    _record(school_engine, [_scan("reader-101", "1")])

    reused = _record(school_engine, [_scan("reader-101", "1", LENA, seconds=30)])

    assert reused == [ScanResult.CHECKED_IN]
    assert _count(school_engine, Visit) == 2  # Max's visit and Lena's
    with Session(school_engine) as session:
        row = session.exec(select(ProcessedScan)).one()
    assert (row.tag, row.reader_ts) == (LENA, NOW + timedelta(seconds=30))
    assert "Scan id reused device_id=reader-101 scan_id=1" in caplog.text
    assert LENA not in caplog.text and MAX not in caplog.text  # tags never reach the log


def test_a_reused_scan_id_with_the_same_tag_but_a_distant_time_is_a_new_scan(
    school_engine: Engine,
) -> None:
    _record(school_engine, [_scan("reader-101", "1")])

    reused = _record(school_engine, [_scan("reader-101", "1", seconds=3600)])

    assert reused == [ScanResult.CHECKED_OUT]
    assert _count(school_engine, ProcessedScan) == 1
    again = _record(school_engine, [_scan("reader-101", "1", seconds=3600, later=30)])
    assert again == [ScanResult.CHECKED_OUT]  # the new scan's redelivery repeats the new result
    assert _group_events(school_engine) == 2


def test_a_reused_scan_id_within_one_batch_is_a_new_scan(school_engine: Engine) -> None:
    results = _record(
        school_engine, [_scan("reader-101", "1"), _scan("reader-101", "1", LENA, seconds=1)]
    )

    assert results == [ScanResult.CHECKED_IN, ScanResult.CHECKED_IN]
    assert _count(school_engine, Visit) == 2
    assert _count(school_engine, ProcessedScan) == 1


def test_pruning_forgets_processed_scans_older_than_the_retention_only(
    school_engine: Engine,
) -> None:
    _record(school_engine, [_scan("reader-101", "old"), _scan("reader-101", "new", seconds=3600)])

    def prune(tx):  # type: ignore[no-untyped-def]
        now = NOW + timedelta(days=7, minutes=30)
        return prune_processed_scans(tx.session, now=now, retention_seconds=7 * 24 * 3600)

    pruned = Store(school_engine).write_blocking(prune)

    assert pruned == 1
    with Session(school_engine) as session:
        assert session.exec(select(ProcessedScan.scan_id)).all() == ["new"]
    # After the window the old id is unknown: seen again, it is simply a new scan.
    assert _record(school_engine, [_scan("reader-101", "old", seconds=7200)]) == [
        ScanResult.CHECKED_IN
    ]


def test_debounce_counts_from_the_last_accepted_scan_across_batches(school_engine: Engine) -> None:
    first = _record(school_engine, [_scan("reader-101", "a")])
    double_tap = _record(school_engine, [_scan("reader-101", "b", seconds=0.5)])
    other_reader = _record(school_engine, [_scan("reader-turnhalle", "c", seconds=1)])

    assert (first, double_tap, other_reader) == (
        [ScanResult.CHECKED_IN],
        [ScanResult.DUPLICATE],
        [ScanResult.TRANSFERRED],
    )


def test_an_unknown_tag_is_not_an_accepted_scan_for_debounce(school_engine: Engine) -> None:
    results = _record(
        school_engine,
        [_scan("reader-101", "a", "DEADBEEF00"), _scan("reader-101", "b", "DEADBEEF00", seconds=1)],
    )

    assert results == [ScanResult.UNKNOWN_TAG, ScanResult.UNKNOWN_TAG]


def test_a_read_time_outside_the_skew_is_replaced_by_the_arrival_time(
    school_engine: Engine,
) -> None:
    scan = Scan("reader-101", "a", MAX, NOW + timedelta(minutes=10), NOW)

    _record(school_engine, [scan])

    with Session(school_engine) as session:
        visit = session.exec(select(Visit)).one()
    assert visit.entry_time == NOW
