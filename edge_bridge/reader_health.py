"""Reader health from the processed scans: the last scan, and how many since a moment.

Rejected scans leave no processed row (nothing happened); `Presence` counts those.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case
from sqlmodel import Session, col, func, select

from edge_bridge.models import ProcessedScan


@dataclass(frozen=True, slots=True)
class ScanCounts:
    """One reader's processed scans: the latest, and how many since `since`."""

    last_scan: datetime | None
    scans: int


def scan_counts(session: Session, *, since: datetime) -> dict[str, ScanCounts]:
    """Per device id, in one query over the (pruned) processed scans."""
    recent = col(ProcessedScan.processed_at) >= since
    rows = session.exec(
        select(
            ProcessedScan.device_id,
            func.max(ProcessedScan.processed_at),
            func.sum(case((recent, 1), else_=0)),
        ).group_by(col(ProcessedScan.device_id))
    ).all()
    return {device_id: ScanCounts(last, int(scans or 0)) for device_id, last, scans in rows}
