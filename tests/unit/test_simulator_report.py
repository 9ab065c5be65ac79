"""Comparing what came back with the plan (simulator/report.py)."""

from __future__ import annotations

from edge_bridge.wire import ScanResult
from simulator.data import DeviceInfo
from simulator.reader import Feedback, ReaderStats
from simulator.report import build_report, latency_summary_ms
from simulator.scenario import Plan, PlannedScan, PlanOptions, ScanKind

DEVICE = DeviceInfo("reader-101", "1", "Raum 101")


def planned(at: float, kind: ScanKind, expected: ScanResult, chained: bool = False) -> PlannedScan:
    return PlannedScan(
        at, "reader-101", "04A1B2C3D4", "student:456", kind, expected, "456", chained=chained
    )


def answer(scan_id: str, result: ScanResult) -> Feedback:
    return Feedback("reader-101", scan_id, result, "", None, 0.004, 0)


def stats(**changes: int) -> dict[str, ReaderStats]:
    values = dict(scanned=0, published=0, resends=0, acked=0, pending=0, buffered=0, dropped=0)
    values.update(changes)
    return {"reader-101": ReaderStats(**values)}


ARRIVAL = planned(1.0, ScanKind.ARRIVAL, ScanResult.CHECKED_IN)
DOUBLE = planned(1.5, ScanKind.DOUBLE_TAP, ScanResult.DUPLICATE, chained=True)
PLAN = Plan(PlanOptions(), (DEVICE,), (ARRIVAL, DOUBLE), (), {"456": "1"})


def test_all_answers_as_expected_is_ok() -> None:
    report = build_report(
        PLAN,
        sent={"a": ARRIVAL, "b": DOUBLE},
        received={"a": answer("a", ScanResult.CHECKED_IN), "b": answer("b", ScanResult.DUPLICATE)},
        reader_stats=stats(),
        elapsed_seconds=1.0,
    )

    assert report.ok
    assert report.by_result == {"checked_in": 1, "duplicate": 1}
    assert report.present == {"456": "1"}
    assert report.to_dict()["ok"] is True


def test_different_answer_is_a_mismatch() -> None:
    report = build_report(
        PLAN,
        sent={"a": ARRIVAL, "b": DOUBLE},
        received={"a": answer("a", ScanResult.CHECKED_OUT), "b": answer("b", ScanResult.DUPLICATE)},
        reader_stats=stats(),
        elapsed_seconds=1.0,
    )

    assert not report.ok
    assert [(m.scan_id, m.expected, m.received) for m in report.mismatches] == [
        ("a", ScanResult.CHECKED_IN, ScanResult.CHECKED_OUT)
    ]


def test_double_tap_answered_the_other_way_round_is_not_a_mismatch() -> None:
    report = build_report(
        PLAN,
        sent={"a": ARRIVAL, "b": DOUBLE},
        received={"a": answer("a", ScanResult.DUPLICATE), "b": answer("b", ScanResult.CHECKED_IN)},
        reader_stats=stats(),
        elapsed_seconds=1.0,
        pairs={"b": "a"},
    )

    assert report.mismatches == ()


def test_unanswered_scan_fails_the_run() -> None:
    report = build_report(
        PLAN,
        sent={"a": ARRIVAL, "b": DOUBLE},
        received={"a": answer("a", ScanResult.CHECKED_IN)},
        reader_stats=stats(buffered=1),
        elapsed_seconds=1.0,
    )

    assert (report.acknowledged, report.unacknowledged, report.buffered) == (1, 1, 1)
    assert not report.ok


def test_scans_never_sent_fail_the_run() -> None:
    report = build_report(PLAN, sent={}, received={}, reader_stats=stats(), elapsed_seconds=1.0)

    assert report.sent == 0 and not report.ok


def test_latency_percentiles_use_the_nearest_rank() -> None:
    latencies = [i / 1000 for i in range(1, 101)]

    summary = latency_summary_ms(latencies)

    assert summary == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert latency_summary_ms([]) == {}
