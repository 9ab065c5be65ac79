"""RFID scans → effects: idempotency, tag lookup, time skew, debounce, then the visit rules.

`record_scans` handles a batch inside one write transaction: it loads what the batch needs
(earlier outcomes, tag owners, open visits, last accepted scans) in a handful of queries and
then applies `decide_scan` and the visit rules to each scan in arrival order. A scan whose
`(device_id, scan_id)` was processed before, with the same tag and (within a few seconds) the
same reader `ts`, is a redelivery: it returns the stored outcome and changes nothing. The same
id with another tag or time is a reader whose counter restarted: a new scan, whose row
replaces the old one. Rows older than the retention are pruned (`prune_processed_scans`).

New processed-scan rows are plain records while the batch runs and go in with one Core
`INSERT` (executemany) at its end: no ORM object per scan. The table's primary key stays the
database-level guard: a row another writer inserted first fails the insert (a unique
violation, which the ingest retries in a new transaction that reads it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, tuple_
from sqlmodel import Session, col, select

from edge_bridge.events import Source
from edge_bridge.models import ActiveGroup, Device, ProcessedScan, RfidTag, Staff, Student
from edge_bridge.store import Tx
from edge_bridge.tuning import SCAN_ID_REUSE_TS_TOLERANCE_SECONDS
from edge_bridge.visits import (
    Action,
    Actor,
    Outcome,
    ScanState,
    add_supervisor,
    check_in,
    close_visit,
    decide_scan,
    group_of,
    open_visit,
    preload_open_visits,
    room_name,
    running_group_in_room,
    since_seconds,
)
from edge_bridge.wire import ScanResult

logger = logging.getLogger(__name__)

MAX_FUTURE_SKEW = timedelta(seconds=5)
MAX_AGE = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Scan:
    """A validated scan from a known device."""

    device_id: str
    scan_id: str
    tag: str
    ts: datetime
    received_at: datetime


@dataclass(slots=True)
class _NewRow:
    """A processed-scan row made in this batch, inserted with the others at its end."""

    device_id: str
    scan_id: str
    tag: str
    result: str
    message: str
    student_name: str | None
    accepted: bool
    scanned_at: datetime
    processed_at: datetime
    reader_ts: datetime | None

    def values(self) -> dict[str, object]:
        return {
            "device_id": self.device_id,
            "scan_id": self.scan_id,
            "tag": self.tag,
            "result": self.result,
            "message": self.message,
            "student_name": self.student_name,
            "accepted": self.accepted,
            "scanned_at": self.scanned_at,
            "processed_at": self.processed_at,
            "reader_ts": self.reader_ts,
        }


def within_skew(scan: Scan) -> bool:
    """Not more than 5 s in the future and not older than 24 h, against the arrival time."""
    return scan.received_at - MAX_AGE <= scan.ts <= scan.received_at + MAX_FUTURE_SKEW


def effective_time(scan: Scan) -> datetime:
    """The card's read time when plausible, else the server's (and the log says so)."""
    if within_skew(scan):
        return scan.ts
    logger.warning(
        "Scan time outside accepted skew, using server time device_id=%s scan_id=%s skew_s=%.1f",
        scan.device_id,
        scan.scan_id,
        (scan.ts - scan.received_at).total_seconds(),
    )
    return scan.received_at


MESSAGES = {
    ScanResult.UNKNOWN_TAG: "Karte unbekannt",
    ScanResult.NO_ACTIVE_GROUP: "Keine Aktivität in diesem Raum",
    ScanResult.DUPLICATE: "Schon erfasst",
    ScanResult.REJECTED: "Scan ungültig",
}


def _message(result: ScanResult, name: str, *, from_room: str = "", to_room: str = "") -> str:
    first = name.split(" ")[0]
    match result:
        case ScanResult.CHECKED_IN:
            return f"Hallo {first}!"
        case ScanResult.CHECKED_OUT:
            return f"Tschüss {first}!"
        case ScanResult.TRANSFERRED:
            return f"Gewechselt von {from_room} zu {to_room}!"
        case ScanResult.SUPERVISOR_AUTHENTICATED:
            return f"Betreuung: {name}"
        case _:
            return MESSAGES[result]


class _BatchState:
    """What the batch's scans look up, loaded together and kept current while applying."""

    def __init__(self, tx: Tx, items: list[tuple[Scan, Device]]) -> None:
        session = tx.session
        keys = {(scan.device_id, scan.scan_id) for scan, _ in items}
        tags = {scan.tag for scan, _ in items}
        # A tag is looked up in the reader's school only: another school's card is unknown.
        school_tags = {(device.school_id, scan.tag) for scan, device in items}
        self.new_rows: dict[tuple[str, str], _NewRow] = {}
        self.processed: dict[tuple[str, str], ProcessedScan | _NewRow] = {
            (row.device_id, row.scan_id): row
            for row in session.exec(
                select(ProcessedScan).where(
                    tuple_(col(ProcessedScan.device_id), col(ProcessedScan.scan_id)).in_(keys)
                )
            ).all()
        }
        self.owners = {  # (school, tag) → plain rows (tag, student_id, staff_id), no ORM objects
            (row.school_id, row.tag): row
            for row in session.exec(
                select(RfidTag.school_id, RfidTag.tag, RfidTag.student_id, RfidTag.staff_id).where(
                    tuple_(col(RfidTag.school_id), col(RfidTag.tag)).in_(school_tags)
                )
            ).all()
        }
        student_ids = {row.student_id for row in self.owners.values() if row.student_id}
        staff_ids = {row.staff_id for row in self.owners.values() if row.staff_id}
        self.students = {
            s.id: s
            for s in session.exec(select(Student).where(col(Student.id).in_(student_ids))).all()
        }
        self.staff = {
            s.id: s for s in session.exec(select(Staff).where(col(Staff.id).in_(staff_ids))).all()
        }
        preload_open_visits(tx, student_ids)
        self.last_accepted: dict[tuple[str, str], datetime] = {
            (device_id, tag): at
            for device_id, tag, at in session.exec(
                select(
                    ProcessedScan.device_id, ProcessedScan.tag, func.max(ProcessedScan.scanned_at)
                )
                .where(col(ProcessedScan.tag).in_(tags), col(ProcessedScan.accepted).is_(True))
                .group_by(col(ProcessedScan.device_id), col(ProcessedScan.tag))
            ).all()
        }

    def since_last_accepted(self, scan: Scan, at: datetime) -> float | None:
        return since_seconds(at, self.last_accepted.get((scan.device_id, scan.tag)))


def record_scans(
    tx: Tx, items: list[tuple[Scan, Device]], *, debounce_seconds: float
) -> list[Outcome]:
    """Apply the CONTRACT §3 rules once per `(device_id, scan_id)`, in order; store outcomes."""
    state = _BatchState(tx, items)
    outcomes = [_record_one(tx, state, scan, device, debounce_seconds) for scan, device in items]
    if state.new_rows:
        tx.session.connection().execute(
            insert(ProcessedScan), [row.values() for row in state.new_rows.values()]
        )
    return outcomes


def _record_one(
    tx: Tx, state: _BatchState, scan: Scan, device: Device, debounce_seconds: float
) -> Outcome:
    key = (scan.device_id, scan.scan_id)
    row = state.processed.get(key)
    if row is not None and is_redelivery(row, scan):
        return Outcome(ScanResult(row.result), row.message, row.student_name)
    if row is not None:
        logger.warning("Scan id reused device_id=%s scan_id=%s", scan.device_id, scan.scan_id)
    at = effective_time(scan)
    owner = state.owners.get((device.school_id, scan.tag))
    student = state.students.get(owner.student_id) if owner and owner.student_id else None
    staff = state.staff.get(owner.staff_id) if owner and owner.staff_id else None
    group = running_group_in_room(tx, device.room_id)
    visit = open_visit(tx, student.id) if student else None
    action, result = decide_scan(
        ScanState(
            is_staff=staff is not None,
            is_student=student is not None,
            active_group_id=group.id if group else None,
            open_visit_group_id=visit.active_group_id if visit else None,
            seconds_since_last_accepted=state.since_last_accepted(scan, at),
            debounce_seconds=debounce_seconds,
        )
    )
    reader = Actor(Source.RFID, device_id=scan.device_id)
    outcome = _apply(
        tx, action, result, student=student, staff=staff, group=group, at=at, by=reader
    )
    accepted = action is not Action.NOTHING
    if accepted:
        state.last_accepted[(scan.device_id, scan.tag)] = at
    if row is None or isinstance(row, _NewRow):  # a new row (replacing one of this batch)
        new = _NewRow(
            scan.device_id,
            scan.scan_id,
            scan.tag,
            str(outcome.result),
            outcome.message,
            outcome.student_name,
            accepted,
            at,
            scan.received_at,
            scan.ts,
        )
        state.new_rows[key] = new
        state.processed[key] = new
        return outcome
    row.tag = scan.tag
    row.result = str(outcome.result)
    row.message = outcome.message
    row.student_name = outcome.student_name
    row.accepted = accepted
    row.scanned_at = at
    row.processed_at = scan.received_at
    row.reader_ts = scan.ts
    return outcome


def is_redelivery(row: ProcessedScan | _NewRow, scan: Scan) -> bool:
    """The stored scan again (same tag, same reader time), not a reused scan_id.

    Rows from before the reader time was stored (no `reader_ts`) are matched by tag alone.
    """
    if row.tag is not None and row.tag != scan.tag:
        return False
    if row.reader_ts is None:
        return True
    return abs((scan.ts - row.reader_ts).total_seconds()) <= SCAN_ID_REUSE_TS_TOLERANCE_SECONDS


def prune_processed_scans(session: Session, *, now: datetime, retention_seconds: float) -> int:
    """Forget scans processed more than `retention_seconds` before `now`; returns how many.

    A redelivery cannot come later than the broker's session expiry, so the default retention
    equals it; a scan_id seen again after that is simply a new scan.
    """
    cutoff = now - timedelta(seconds=retention_seconds)
    result = session.exec(  # type: ignore[call-overload]
        delete(ProcessedScan).where(col(ProcessedScan.processed_at) < cutoff)
    )
    return int(result.rowcount or 0)


def _apply(
    tx: Tx,
    action: Action,
    result: ScanResult,
    *,
    student: Student | None,
    staff: Staff | None,
    group: ActiveGroup | None,
    at: datetime,
    by: Actor,
) -> Outcome:
    name = student.display_name if student else (staff.name if staff else "")
    shown_name = student.display_name if student else None
    match action:
        case Action.NOTHING:
            return Outcome(result, _message(result, name), shown_name)
        case Action.SUPERVISE:
            assert staff is not None and group is not None
            add_supervisor(tx, staff.id, group, at=at)
            return Outcome(result, _message(result, name))
        case Action.CHECK_OUT:
            assert student is not None
            visit = open_visit(tx, student.id)
            assert visit is not None
            close_visit(tx, visit, student, at=at, source=Source.RFID, by=by)
            return Outcome(result, _message(result, name), shown_name)
        case Action.CHECK_IN | Action.TRANSFER:
            assert student is not None and group is not None
            current = open_visit(tx, student.id)
            from_room = room_name(tx, group_of(tx, current).room_id) if current else ""
            check_in(tx, student, group, at=at, source=Source.RFID, by=by)
            message = _message(
                result, name, from_room=from_room, to_room=room_name(tx, group.room_id)
            )
            return Outcome(result, message, shown_name)
