"""Many scans from several test readers with end-to-end acknowledgement, like real readers.

Each scan is re-published with the same scan_id until its feedback arrives (CONTRACT §3),
so a bridge or broker that dies mid-stream loses nothing; the bridge's idempotency turns
every repeat into a repeat of the stored feedback.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from edge_bridge.models import EventRecord, ProcessedScan, Visit
from tests.factories import VISIT_EVENT_TYPES
from tests.support.reader import TestReader


@dataclass
class SentScan:
    """One scan and the feedback it got (None until it arrives)."""

    device_id: str
    scan_id: str
    tag: str
    ts: datetime
    sends: int = 0
    last_sent: float = 0.0
    feedback: dict[str, Any] | None = None
    first_sent: float = 0.0  # time.monotonic() of the first publish
    answered: float = 0.0  # when collect() first saw its feedback (polling: up to 50 ms late)


@dataclass
class ScanStream:
    """Plans `count` scans over the readers and drives them until all are answered."""

    readers: dict[str, TestReader]
    tags: list[str]
    count: int
    seed: int = 1
    scans: list[SentScan] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        devices = sorted(self.readers)
        self.scans = [
            SentScan(
                rng.choice(devices), uuid.uuid4().hex, rng.choice(self.tags), datetime.now(UTC)
            )
            for _ in range(self.count)
        ]

    def publish(self, start: int, stop: int) -> None:
        """Publish scans [start, stop) without waiting for broker acknowledgements."""
        for scan in self.scans[start:stop]:
            self._send(scan)

    def _send(self, scan: SentScan) -> None:
        reader = self.readers[scan.device_id]
        reader.send(scan.tag, scan_id=scan.scan_id, ts=scan.ts, wait=False)
        scan.sends += 1
        scan.last_sent = time.monotonic()
        scan.first_sent = scan.first_sent or scan.last_sent

    def collect(self) -> int:
        """Pick up arrived feedback; returns how many scans are answered."""
        answered = 0
        for scan in self.scans:
            if scan.feedback is None and scan.sends:
                reader = self.readers[scan.device_id]
                if reader.has_feedback(scan.scan_id):
                    scan.feedback = reader.wait_feedback(scan.scan_id, timeout=0.1)
                    scan.answered = time.monotonic()
            answered += scan.feedback is not None
        return answered

    def wait_answered(self, minimum: int, *, timeout: float, resend_after: float = 3.0) -> int:
        """Wait until `minimum` scans have feedback, re-publishing overdue ones; bounded."""
        deadline = time.monotonic() + timeout
        while True:
            answered = self.collect()
            if answered >= minimum:
                return answered
            if time.monotonic() > deadline:
                msg = f"only {answered} of {minimum} scans answered within {timeout} s"
                raise TimeoutError(msg)
            now = time.monotonic()
            for scan in self.scans:
                if scan.sends and scan.feedback is None and now - scan.last_sent > resend_after:
                    self._send(scan)
            time.sleep(0.05)  # polling feedback queues of thousands of scans; bounded above


def assert_exactly_one_effect_each(
    engine: Engine, stream: ScanStream, *, sent: int | None = None
) -> None:
    """Every scan sent (all of `stream`, or its first `sent`) was processed once: processed
    rows, visits, visit events and the readers' feedback agree (a repeat re-sends the first
    result)."""
    with Session(engine) as session:
        rows = session.exec(select(ProcessedScan)).all()
        events = session.exec(
            select(func.count())
            .select_from(EventRecord)
            .where(col(EventRecord.type).in_(VISIT_EVENT_TYPES))
        ).one()
        visits = session.exec(select(func.count()).select_from(Visit)).one()
        closed = session.exec(
            select(func.count()).select_from(Visit).where(col(Visit.exit_time).is_not(None))
        ).one()
    stored = {(row.device_id, row.scan_id): row.result for row in rows}
    published = {(scan.device_id, scan.scan_id): scan for scan in stream.scans[:sent]}
    assert set(stored) == set(published)
    for key, scan in published.items():
        assert scan.feedback is not None
        assert scan.feedback["result"] == stored[key]
    results = Counter(stored.values())
    assert events == results["checked_in"] + results["checked_out"] + 2 * results["transferred"]
    assert visits == results["checked_in"] + results["transferred"]
    assert closed == results["checked_out"] + results["transferred"]
