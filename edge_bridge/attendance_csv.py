"""The attendance record as CSV for spreadsheet programs, one child per row, streamed.

Choices, for German spreadsheets: UTF-8 with a byte order mark (so umlauts show without an
import dialog), `;` as the separator (the comma is the decimal separator there), times in
the school's time zone as `HH:MM`. Quoting is the `csv` module's: a name with `;`, `"` or a
line break stays one cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

from edge_bridge.attendance import AttendanceRecord, Stay

BOM = "\ufeff"
HEADER = [
    "Datum",
    "Kind",
    "OGS-Gruppe",
    "Ankunft",
    "Abgang",
    "Eingecheckt von",
    "Ausgecheckt von",
    "Grund",
    "Räume",
]
REASONS = {
    "checkout": "ausgecheckt",
    "transfer": "gewechselt",
    "activity_end": "Aktivität beendet",
    "auto_checkout": "Tagesende (automatisch)",
}


def _clock(moment: datetime | None, tz: ZoneInfo) -> str:
    return "" if moment is None else moment.astimezone(tz).strftime("%H:%M")


def _stay_text(stay: Stay, tz: ZoneInfo) -> str:
    return f"{stay.room_name} {_clock(stay.entry_time, tz)}–{_clock(stay.exit_time, tz)}"


def record_row(record: AttendanceRecord, *, day: date, tz: ZoneInfo) -> list[str]:
    """One child's day as the cells under `HEADER`."""
    left_by = record.checked_out_by
    return [
        day.isoformat(),
        record.student_name,
        record.ogs_group_name or "",
        _clock(record.arrival, tz),
        _clock(record.departure, tz),
        record.checked_in_by.describe(),
        left_by.describe() if left_by else "",
        REASONS.get(record.departure_reason or "", "") if not record.present else "anwesend",
        ", ".join(_stay_text(stay, tz) for stay in record.stays),
    ]


def iter_csv(records: Iterable[AttendanceRecord], *, day: date, tz: ZoneInfo) -> Iterator[str]:
    """The CSV text in pieces: BOM and header first, then one piece per child."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(HEADER)
    yield BOM + take()
    for record in records:
        writer.writerow(record_row(record, day=day, tz=tz))
        yield take()
