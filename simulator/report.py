"""The outcome of an afternoon: what was sent, what came back, where it differed from the plan."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_bridge.wire import ScanResult
from simulator.reader import Feedback, ReaderStats
from simulator.scenario import Plan, PlannedScan, ScanKind


@dataclass(frozen=True)
class Mismatch:
    """A scan whose feedback differs from the model's prediction (no tags: they are secret)."""

    scan_id: str
    device_id: str
    subject: str
    kind: ScanKind
    at_seconds: float
    expected: ScanResult
    received: ScanResult
    message: str


@dataclass(frozen=True)
class AfternoonReport:
    """Counts and differences; `ok` is what the exit code reports."""

    planned: int
    sent: int
    acknowledged: int
    unacknowledged: int
    buffered: int
    dropped: int
    resends: int
    by_result: Mapping[str, int]
    expected_by_result: Mapping[str, int]
    mismatches: tuple[Mismatch, ...]
    present: Mapping[str, str]
    elapsed_seconds: float
    latency_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not self.mismatches
            and self.unacknowledged == 0
            and self.dropped == 0
            and self.sent == self.planned
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "planned": self.planned,
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "unacknowledged": self.unacknowledged,
            "buffered": self.buffered,
            "dropped": self.dropped,
            "resends": self.resends,
            "by_result": dict(self.by_result),
            "expected_by_result": dict(self.expected_by_result),
            "mismatches": [
                {
                    "scan_id": m.scan_id,
                    "device_id": m.device_id,
                    "subject": m.subject,
                    "kind": str(m.kind),
                    "at_seconds": round(m.at_seconds, 3),
                    "expected": str(m.expected),
                    "received": str(m.received),
                    "message": m.message,
                }
                for m in self.mismatches
            ],
            "present": dict(self.present),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "latency_ms": dict(self.latency_ms),
        }


def build_report(
    plan: Plan,
    *,
    sent: Mapping[str, PlannedScan],
    received: Mapping[str, Feedback],
    reader_stats: Mapping[str, ReaderStats],
    elapsed_seconds: float,
    pairs: Mapping[str, str] | None = None,
) -> AfternoonReport:
    """Compare each sent scan's feedback with its expected result.

    `pairs` maps a double tap to its first tap. A pair answered the other way round (the
    first tap's publish was lost and resent after the double tap) still counts as expected:
    one of the two took effect, the other was a duplicate.
    """
    swapped = _swapped_pairs(sent, received, pairs or {})
    mismatches = tuple(
        Mismatch(
            scan_id=scan_id,
            device_id=scan.device_id,
            subject=scan.subject,
            kind=scan.kind,
            at_seconds=scan.at_seconds,
            expected=scan.expected,
            received=feedback.result,
            message=feedback.message,
        )
        for scan_id, scan in sent.items()
        if (feedback := received.get(scan_id)) is not None
        and feedback.result != scan.expected
        and scan_id not in swapped
    )
    acked = [f for scan_id, f in received.items() if scan_id in sent]
    latencies = sorted(f.latency_seconds for f in acked if f.latency_seconds is not None)
    return AfternoonReport(
        planned=len(plan.scans),
        sent=len(sent),
        acknowledged=len(acked),
        unacknowledged=len(sent) - len(acked),
        buffered=sum(s.buffered for s in reader_stats.values()),
        dropped=sum(s.dropped for s in reader_stats.values()),
        resends=sum(s.resends for s in reader_stats.values()),
        by_result=dict(Counter(str(f.result) for f in acked)),
        expected_by_result=dict(plan.expected_counts()),
        mismatches=mismatches,
        present=dict(plan.present),
        elapsed_seconds=elapsed_seconds,
        latency_ms=latency_summary_ms(latencies),
    )


def _swapped_pairs(
    sent: Mapping[str, PlannedScan],
    received: Mapping[str, Feedback],
    pairs: Mapping[str, str],
) -> set[str]:
    swapped: set[str] = set()
    for second, first in pairs.items():
        if first not in received or second not in received:
            continue
        got = sorted([received[first].result, received[second].result])
        if got == sorted([sent[first].expected, sent[second].expected]):
            swapped.update((first, second))
    return swapped


def latency_summary_ms(sorted_seconds: list[float]) -> dict[str, float]:
    """p50 / p90 / p99 / max of sorted latencies, in milliseconds (nearest rank)."""
    if not sorted_seconds:
        return {}

    def rank(q: float) -> float:
        index = max(0, min(len(sorted_seconds) - 1, math.ceil(q * len(sorted_seconds)) - 1))
        return round(sorted_seconds[index] * 1000, 2)

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": rank(1.0)}
