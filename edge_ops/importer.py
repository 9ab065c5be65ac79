"""Import file (CONTRACT §7) → database: validate everything first, then one transaction.

Records are upserted by id, so importing the same file twice changes nothing. Any problem
refuses the whole file with `section[index].field: reason` lines and writes nothing. On
PostgreSQL the commit tells every running instance to reload its staff directory.

A file belongs to one school: its `school` section (upserted by id), else the default
school 1. Ids, emails and device ids are global, so one that another school already holds
is refused, never moved; references resolve within the school; tags are unique per school.
Importing one school's file never changes another school's rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from edge_bridge.db import transaction
from edge_bridge.errors import ImportFileError
from edge_bridge.eventlog import announce_directory_changed
from edge_bridge.models import (
    DEFAULT_SCHOOL_ID,
    ActiveGroup,
    Device,
    OgsGroup,
    OgsGroupLeader,
    RfidTag,
    Room,
    School,
    Staff,
    Student,
    Supervision,
    utcnow,
)
from edge_bridge.passwords import hash_password, verify_password
from edge_bridge.wire import normalize_tag

logger = logging.getLogger(__name__)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _tag(value: str | None) -> str | None:
    return None if value is None else normalize_tag(value)


class SchoolImport(_Record):
    id: Id
    name: Name
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe", a folder
                msg = f"unknown time zone {value!r}"
                raise ValueError(msg) from None
        return value


class RoomImport(_Record):
    id: Id
    name: Name


class StaffImport(_Record):
    id: Id
    name: Name
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
    password: Annotated[str, StringConstraints(min_length=8, max_length=200)] | None = None
    admin: bool = False
    tag: str | None = None

    _normalize_tag = field_validator("tag")(classmethod(lambda cls, v: _tag(v)))

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class OgsGroupImport(_Record):
    id: Id
    name: Name
    room_id: Id | None = None
    leader_ids: list[Id] = []


class StudentImport(_Record):
    id: Id
    first_name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
    ]
    last_name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
    ]
    tag: str | None = None
    ogs_group_id: Id | None = None

    _normalize_tag = field_validator("tag")(classmethod(lambda cls, v: _tag(v)))


class DeviceImport(_Record):
    id: DeviceId
    room_id: Id
    active: bool = True


class ActiveGroupImport(_Record):
    id: Id
    name: Name
    room_id: Id
    supervisor_ids: list[Id] = []


class ImportFile(_Record):
    """The whole file; every section optional. Without `school`, the default school."""

    school: SchoolImport | None = None

    rooms: list[RoomImport] = []
    staff: list[StaffImport] = []
    ogs_groups: list[OgsGroupImport] = []
    students: list[StudentImport] = []
    devices: list[DeviceImport] = []
    active_groups: list[ActiveGroupImport] = []


def _where(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "file"


def parse_import(raw: bytes | str) -> ImportFile:
    """Parse and validate the file's shape; raise ImportFileError naming each bad field."""
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportFileError([f"file: not valid JSON ({exc})"]) from None
    if not isinstance(document, dict):
        raise ImportFileError(["file: must be a JSON object with sections such as 'rooms'"])
    try:
        return ImportFile.model_validate(document)
    except pydantic.ValidationError as exc:
        problems = [
            f"{_where(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        ]
        raise ImportFileError(problems) from None


# section → (its table, how a problem names one of its records)
_SECTIONS: dict[str, tuple[type[Any], str]] = {
    "rooms": (Room, "room"),
    "staff": (Staff, "staff member"),
    "ogs_groups": (OgsGroup, "home group"),
    "students": (Student, "student"),
    "devices": (Device, "device"),
    "active_groups": (ActiveGroup, "active group"),
}
# (section, field, target section): every reference must resolve within the file's school
_REFERENCES = (
    ("ogs_groups", "room_id", "rooms"),
    ("ogs_groups", "leader_ids", "staff"),
    ("students", "ogs_group_id", "ogs_groups"),
    ("devices", "room_id", "rooms"),
    ("active_groups", "room_id", "rooms"),
    ("active_groups", "supervisor_ids", "staff"),
)


class _Checker:
    """Cross-record rules: unique ids and tags, and every id, reference, email and tag
    checked against the file's school (in the file, or in the database for that school).

    Ids are global, so an id the database holds for another school is refused, never
    moved; emails are global too (they are the login); tags are unique per school.
    """

    def __init__(self, data: ImportFile, session: Session) -> None:
        self.data, self.session, self.problems = data, session, list[str]()
        self.school_id = school_of(data)

    def _schools_of(self, model: type[Any], ids: set[Any]) -> dict[Any, int]:
        """The school of each of these ids the database already holds."""
        if not ids:
            return {}
        rows = self.session.exec(select(model.id, model.school_id).where(model.id.in_(ids)))
        return dict(rows.all())

    def _own_ids(self, section: str) -> None:
        model, noun = _SECTIONS[section]
        records = getattr(self.data, section)
        schools = self._schools_of(model, {record.id for record in records})
        seen: set[Any] = set()
        for index, record in enumerate(records):
            if record.id in seen:
                self.problems.append(f"{section}[{index}].id: duplicate id {record.id}")
            elif schools.get(record.id, self.school_id) != self.school_id:
                self.problems.append(
                    f"{section}[{index}].id: {noun} {record.id} belongs to another school"
                )
            seen.add(record.id)

    def _refs(self, section: str, field: str, target: str) -> None:
        model, noun = _SECTIONS[target]
        records = getattr(self.data, section)
        in_file = {record.id for record in getattr(self.data, target)}
        wanted = {v for r in records for v in _as_list(getattr(r, field)) if v is not None}
        schools = self._schools_of(model, wanted - in_file)
        for index, record in enumerate(records):
            for value in _as_list(getattr(record, field)):
                if value is None or value in in_file or schools.get(value) == self.school_id:
                    continue
                reason = (
                    f"unknown {target} id {value}"
                    if value not in schools
                    else f"{noun} {value} belongs to another school"
                )
                self.problems.append(f"{section}[{index}].{field}: {reason}")

    def check(self) -> list[str]:
        for section in _SECTIONS:
            self._own_ids(section)
        for section, field, target in _REFERENCES:
            self._refs(section, field, target)
        self._check_emails()
        self._check_tags()
        self._check_rooms_free()
        return self.problems

    def _check_emails(self) -> None:
        emails = {record.email for record in self.data.staff}
        stored = self.session.exec(
            select(Staff.email, Staff.id, Staff.school_id).where(col(Staff.email).in_(emails))
        ).all()
        owners = {email: (staff_id, school_id) for email, staff_id, school_id in stored}
        seen: dict[str, int] = {}
        for index, record in enumerate(self.data.staff):
            where = f"staff[{index}].email"
            if record.email in seen:
                self.problems.append(f"{where}: duplicate of staff[{seen[record.email]}]")
            seen[record.email] = index
            owner_id, owner_school = owners.get(record.email, (record.id, self.school_id))
            if owner_id == record.id:
                continue
            if owner_school != self.school_id:
                self.problems.append(f"{where}: already used by a staff member of another school")
            else:
                self.problems.append(f"{where}: already used by staff id {owner_id}")

    def _check_tags(self) -> None:
        tags = {r.tag for r in (*self.data.staff, *self.data.students) if r.tag is not None}
        stored = {
            row.tag: row
            for row in self.session.exec(
                select(RfidTag).where(
                    RfidTag.school_id == self.school_id, col(RfidTag.tag).in_(tags)
                )
            ).all()
        }
        seen: dict[str, str] = {}
        for section, kind in (("staff", "staff_id"), ("students", "student_id")):
            for index, record in enumerate(getattr(self.data, section)):
                if record.tag is None:
                    continue
                where = f"{section}[{index}].tag"
                if record.tag in seen:
                    self.problems.append(f"{where}: duplicate tag, also used by {seen[record.tag]}")
                    continue
                seen[record.tag] = where
                owner = stored.get(record.tag)
                if owner is not None and getattr(owner, kind) != record.id:
                    self.problems.append(f"{where}: tag already belongs to another person")

    def _check_rooms_free(self) -> None:
        """One running group per room; a room is one school's, so only this school's count."""
        rooms: dict[int, int] = {}
        for index, record in enumerate(self.data.active_groups):
            where = f"active_groups[{index}].room_id: room {record.room_id} already has"
            if record.room_id in rooms:
                self.problems.append(f"{where} active_groups[{rooms[record.room_id]}]")
            rooms[record.room_id] = index
            running = self.session.exec(
                select(ActiveGroup.id).where(
                    ActiveGroup.school_id == self.school_id,
                    ActiveGroup.room_id == record.room_id,
                    col(ActiveGroup.ended_at).is_(None),
                )
            ).first()
            if running is not None and running != record.id:
                self.problems.append(f"{where} running active group {running}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class ImportSummary(BaseModel):
    """How many records of each section the file held."""

    rooms: int = 0
    staff: int = 0
    ogs_groups: int = 0
    students: int = 0
    devices: int = 0
    active_groups: int = 0


def _upsert(session: Session, model: type[Any], key: Any, **values: Any) -> Any:
    row = session.get(model, key)
    if row is None:
        row = model(id=key, **values)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    session.add(row)
    return row


def _set_tag(
    session: Session,
    school_id: int,
    *,
    tag: str | None,
    staff_id: int | None = None,
    student_id: int | None = None,
) -> None:
    owner = RfidTag.staff_id if staff_id is not None else RfidTag.student_id
    owner_id = staff_id if staff_id is not None else student_id
    for old in session.exec(select(RfidTag).where(owner == owner_id)).all():
        if old.tag != tag:
            session.delete(old)
    session.flush()
    if tag is not None and session.get(RfidTag, (school_id, tag)) is None:
        session.add(RfidTag(school_id=school_id, tag=tag, staff_id=staff_id, student_id=student_id))


def _password_hash(record: StaffImport, current: Staff | None) -> str | None:
    if record.password is None:
        return current.password_hash if current else None
    if current and verify_password(record.password, current.password_hash):
        return current.password_hash  # unchanged: keep the hash so re-import changes nothing
    return hash_password(record.password)


def school_of(data: ImportFile) -> int:
    return data.school.id if data.school else DEFAULT_SCHOOL_ID


def _write_school(session: Session, data: ImportFile) -> None:
    if data.school is not None:
        _upsert(
            session, School, data.school.id, name=data.school.name, timezone=data.school.timezone
        )
    elif session.get(School, DEFAULT_SCHOOL_ID) is None:
        session.add(School(id=DEFAULT_SCHOOL_ID, name="Schule"))
    session.flush()


def _write(session: Session, data: ImportFile, now: datetime) -> None:
    school_id = school_of(data)
    _write_school(session, data)
    for room in data.rooms:
        _upsert(session, Room, room.id, name=room.name, school_id=school_id)
    for person in data.staff:
        current = session.get(Staff, person.id)
        _upsert(
            session,
            Staff,
            person.id,
            name=person.name,
            email=person.email,
            admin=person.admin,
            password_hash=_password_hash(person, current),
            school_id=school_id,
        )
    session.flush()
    for person in data.staff:
        _set_tag(session, school_id, tag=person.tag, staff_id=person.id)
    for group in data.ogs_groups:
        _upsert(
            session,
            OgsGroup,
            group.id,
            name=group.name,
            room_id=group.room_id,
            school_id=school_id,
        )
        _set_leaders(session, school_id, group.id, group.leader_ids)
    session.flush()
    for child in data.students:
        _upsert(
            session,
            Student,
            child.id,
            first_name=child.first_name,
            last_name=child.last_name,
            ogs_group_id=child.ogs_group_id,
            school_id=school_id,
        )
    session.flush()
    for child in data.students:
        _set_tag(session, school_id, tag=child.tag, student_id=child.id)
    for device in data.devices:
        _upsert(
            session,
            Device,
            device.id,
            room_id=device.room_id,
            active=device.active,
            school_id=school_id,
        )
    for group in data.active_groups:
        _write_active_group(session, school_id, group, now)


def _set_leaders(session: Session, school_id: int, group_id: int, leader_ids: list[int]) -> None:
    rows = session.exec(select(OgsGroupLeader).where(OgsGroupLeader.ogs_group_id == group_id)).all()
    for row in rows:
        if row.staff_id not in leader_ids:
            session.delete(row)
    existing = {row.staff_id for row in rows}
    for staff_id in leader_ids:
        if staff_id not in existing:
            session.add(
                OgsGroupLeader(ogs_group_id=group_id, staff_id=staff_id, school_id=school_id)
            )


def _write_active_group(
    session: Session, school_id: int, record: ActiveGroupImport, now: datetime
) -> None:
    group = session.get(ActiveGroup, record.id)
    if group is None:
        group = ActiveGroup(
            id=record.id,
            name=record.name,
            room_id=record.room_id,
            started_at=now,
            school_id=school_id,
        )
    elif group.ended_at is not None:
        group.started_at, group.ended_at = now, None  # the file says it runs: restart it
    group.name, group.room_id = record.name, record.room_id
    session.add(group)
    session.flush()
    open_rows = session.exec(
        select(Supervision).where(
            Supervision.active_group_id == record.id,
            Supervision.ended_at.is_(None),  # type: ignore[union-attr]
        )
    ).all()
    for row in open_rows:
        if row.staff_id not in record.supervisor_ids:
            row.ended_at = now
            session.add(row)
    supervising = {row.staff_id for row in open_rows}
    for staff_id in record.supervisor_ids:
        if staff_id not in supervising:
            session.add(Supervision(staff_id=staff_id, active_group_id=record.id, started_at=now))


# Tables whose ids the bridge also assigns itself (a started activity), after imported ones.
_SEQUENCED = ("active_group",)


def _advance_id_sequences(session: Session) -> None:
    """PostgreSQL: move each id sequence past the ids the file set explicitly, so the next
    activity started at runtime does not get an imported id (SQLite takes max + 1 anyway)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in _SEQUENCED:
        session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT GREATEST(COALESCE(MAX(id), 0), 1) FROM {table}))"
            )
        )


def import_data(engine: Engine, raw: bytes | str) -> ImportSummary:
    """Validate the whole file, then write it in one transaction; raise ImportFileError."""
    data = parse_import(raw)
    with transaction(engine) as session:
        problems = _Checker(data, session).check()
        if problems:
            raise ImportFileError(problems)
        _write(session, data, utcnow())
        _advance_id_sequences(session)
        announce_directory_changed(session)  # PostgreSQL: every instance reloads at commit
    summary = ImportSummary(**{name: len(getattr(data, name)) for name in _SECTIONS})
    counts = " ".join(f"{k}={v}" for k, v in summary.model_dump().items())
    logger.info("Import finished school_id=%d %s", school_of(data), counts)
    return summary


def import_file(engine: Engine, path: Path) -> ImportSummary:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFileError([f"file: cannot read {path}: {exc.strerror}"]) from None
    return import_data(engine, raw)
