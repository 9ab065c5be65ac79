"""One RFID scan → one effect: idempotency, tag lookup, time skew, debounce, the visit rules.

`record_scan` runs inside a write transaction (a batch of scans shares one). A scan whose
`(device_id, scan_id)` was processed before returns the stored outcome and changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from edge_bridge.events import Source
from edge_bridge.models import ActiveGroup, Device, ProcessedScan, RfidTag, Staff, Student
from edge_bridge.store import Tx
from edge_bridge.visits import (
    Action,
    Outcome,
    ScanState,
    add_supervisor,
    check_in,
    close_visit,
    decide_scan,
    open_visit,
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


def stored_outcome(session: Session, device_id: str, scan_id: str) -> Outcome | None:
    row = session.get(ProcessedScan, (device_id, scan_id))
    if row is None:
        return None
    return Outcome(ScanResult(row.result), row.message, row.student_name)


def _last_accepted(session: Session, device_id: str, tag: str) -> datetime | None:
    return session.exec(
        select(ProcessedScan.scanned_at)
        .where(
            ProcessedScan.device_id == device_id,
            ProcessedScan.tag == tag,
            col(ProcessedScan.accepted).is_(True),
        )
        .order_by(col(ProcessedScan.scanned_at).desc())
        .limit(1)
    ).first()


def record_scan(tx: Tx, scan: Scan, device: Device, *, debounce_seconds: float) -> Outcome:
    """Apply the CONTRACT §3 rules once for `(device_id, scan_id)`; store and return the outcome."""
    session = tx.session
    previous = stored_outcome(session, scan.device_id, scan.scan_id)
    if previous is not None:
        return previous
    at = effective_time(scan)
    owner = session.get(RfidTag, scan.tag)
    student = session.get(Student, owner.student_id) if owner and owner.student_id else None
    staff = session.get(Staff, owner.staff_id) if owner and owner.staff_id else None
    group = running_group_in_room(session, device.room_id)
    visit = open_visit(session, student.id) if student else None
    state = ScanState(
        is_staff=staff is not None,
        is_student=student is not None,
        active_group_id=group.id if group else None,
        open_visit_group_id=visit.active_group_id if visit else None,
        seconds_since_last_accepted=since_seconds(
            at, _last_accepted(session, scan.device_id, scan.tag)
        ),
        debounce_seconds=debounce_seconds,
    )
    action, result = decide_scan(state)
    outcome = _apply(tx, action, result, student=student, staff=staff, group=group, at=at)
    session.add(
        ProcessedScan(
            device_id=scan.device_id,
            scan_id=scan.scan_id,
            tag=scan.tag,
            result=str(outcome.result),
            message=outcome.message,
            student_name=outcome.student_name,
            accepted=action is not Action.NOTHING,
            scanned_at=at,
            processed_at=scan.received_at,
        )
    )
    session.flush()
    return outcome


def _apply(
    tx: Tx,
    action: Action,
    result: ScanResult,
    *,
    student: Student | None,
    staff: Staff | None,
    group: ActiveGroup | None,
    at: datetime,
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
            assert student is not None and group is not None
            visit = open_visit(tx.session, student.id)
            assert visit is not None
            close_visit(tx, visit, student, at=at, source=Source.RFID)
            return Outcome(result, _message(result, name), shown_name)
        case Action.CHECK_IN | Action.TRANSFER:
            assert student is not None and group is not None
            from_room = _current_room_name(tx.session, student.id)
            check_in(tx, student, group, at=at, source=Source.RFID)
            to_room = _room_of(tx.session, group)
            return Outcome(
                result, _message(result, name, from_room=from_room, to_room=to_room), shown_name
            )


def _room_of(session: Session, group: ActiveGroup) -> str:
    return room_name(session, group.room_id)


def _current_room_name(session: Session, student_id: int) -> str:
    visit = open_visit(session, student_id)
    if visit is None:
        return ""
    group = session.get(ActiveGroup, visit.active_group_id)
    return _room_of(session, group) if group else ""
