"""SQLModel tables and the schemas derived from them.

Times are stored as UTC. The rules the database enforces itself: at most one open visit per
student, at most one running active group per room, one open supervision per staff member and
group, and a tag belongs to exactly one staff member or student.

Schools are tenants. A school owns its rooms, staff, home groups, students, tags, readers and
active groups: each carries a `school_id`, and every reference between them is a composite
foreign key `(school_id, x_id)`, so the database itself refuses a student of school A in a
home group of school B, or a reader of A in a room of B. Tags are unique per school (two
schools may hand out the same card number); ids, staff emails (the login) and device ids
(MQTT client ids) stay globally unique.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, on SQLite and PostgreSQL alike."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = f"naive datetime refused, got: {value!r}"
            raise ValueError(msg)
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _when(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


def _open_only(column: str) -> dict[str, Any]:
    clause = sa.text(f"{column} IS NULL")
    return {"sqlite_where": clause, "postgresql_where": clause}


def _owned_by_school() -> Any:
    return Field(foreign_key="school.id", index=True)


def _same_school(
    owner: str, column: str, target: str, *, ondelete: str | None = None
) -> sa.ForeignKeyConstraint:
    """`owner(school_id, column)` → `target(school_id, id)`: a row of the same school."""
    return sa.ForeignKeyConstraint(
        ["school_id", column],
        [f"{target}.school_id", f"{target}.id"],
        name=f"fk_{owner}_{column}_school",
        ondelete=ondelete,
    )


def _school_key(table: str) -> sa.UniqueConstraint:
    """`(school_id, id)`: what the composite references point at."""
    return sa.UniqueConstraint("school_id", "id", name=f"uq_{table}_school_id")


# --- schools, people and places ----------------------------------------------------------------

DEFAULT_SCHOOL_ID = 1  # an import file without a `school` section, and every pre-school row


class School(SQLModel, table=True):
    """A tenant: one school's after-school care."""

    id: int = Field(primary_key=True)
    name: str = Field(max_length=200)
    # IANA name ("Europe/Berlin"); None: the deployment's SCHOOL_TIMEZONE.
    timezone: str | None = Field(default=None, max_length=64)


class Room(SQLModel, table=True):
    """A room with at most one reader-equipped active group at a time."""

    __table_args__ = (_school_key("room"),)
    id: int = Field(primary_key=True)
    school_id: int = _owned_by_school()
    name: str = Field(max_length=200)


class Staff(SQLModel, table=True):
    """A supervisor or admin of one school; logs in with email and password."""

    __table_args__ = (_school_key("staff"),)
    id: int = Field(primary_key=True)
    school_id: int = _owned_by_school()
    name: str = Field(max_length=200)
    email: str = Field(max_length=320, sa_column_kwargs={"unique": True})
    password_hash: str | None = Field(default=None, max_length=200)
    admin: bool = False


class OgsGroup(SQLModel, table=True):
    """A home group (OGS-Gruppe): the class-like group every student belongs to."""

    __tablename__ = "ogs_group"
    __table_args__ = (_school_key("ogs_group"), _same_school("ogs_group", "room_id", "room"))
    id: int = Field(primary_key=True)
    school_id: int = _owned_by_school()
    name: str = Field(max_length=200)
    room_id: int | None = None


class OgsGroupLeader(SQLModel, table=True):
    """Who leads which home group."""

    __tablename__ = "ogs_group_leader"
    __table_args__ = (
        _same_school("ogs_group_leader", "ogs_group_id", "ogs_group", ondelete="CASCADE"),
        _same_school("ogs_group_leader", "staff_id", "staff", ondelete="CASCADE"),
    )
    ogs_group_id: int = Field(primary_key=True)
    staff_id: int = Field(primary_key=True)
    school_id: int = _owned_by_school()


class Student(SQLModel, table=True):
    """A child in after-school care."""

    __table_args__ = (_school_key("student"), _same_school("student", "ogs_group_id", "ogs_group"))
    id: int = Field(primary_key=True)
    school_id: int = _owned_by_school()
    first_name: str = Field(max_length=100)
    last_name: str = Field(max_length=100)
    ogs_group_id: int | None = Field(default=None, index=True)

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class RfidTag(SQLModel, table=True):
    """A normalized tag, unique within its school, owned by exactly one staff member or
    student of that school."""

    __tablename__ = "rfid_tag"
    __table_args__ = (
        sa.CheckConstraint(
            "(staff_id IS NULL) <> (student_id IS NULL)", name="ck_rfid_tag_one_owner"
        ),
        _same_school("rfid_tag", "staff_id", "staff", ondelete="CASCADE"),
        _same_school("rfid_tag", "student_id", "student", ondelete="CASCADE"),
    )
    school_id: int = Field(foreign_key="school.id", primary_key=True)
    tag: str = Field(primary_key=True, max_length=64)
    staff_id: int | None = Field(default=None, sa_column_kwargs={"unique": True})
    student_id: int | None = Field(default=None, sa_column_kwargs={"unique": True})


class Device(SQLModel, table=True):
    """An RFID reader in a room; its MQTT client id and username are its id."""

    __table_args__ = (_same_school("device", "room_id", "room"),)
    id: str = Field(primary_key=True, max_length=64)
    school_id: int = _owned_by_school()
    room_id: int
    active: bool = True
    online: bool = False
    last_seen: datetime | None = _when(nullable=True)
    firmware: str | None = Field(default=None, max_length=64)


# --- what happens during the afternoon ---------------------------------------------------------


class ActiveGroup(SQLModel, table=True):
    """A running activity in a room (e.g. "Fußball AG"); `ended_at` is None while it runs."""

    __tablename__ = "active_group"
    __table_args__ = (
        sa.Index("uq_active_group_open_room", "room_id", unique=True, **_open_only("ended_at")),
        _school_key("active_group"),
        _same_school("active_group", "room_id", "room"),
    )
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = _owned_by_school()
    name: str = Field(max_length=200)
    room_id: int
    started_at: datetime = _when()
    ended_at: datetime | None = _when(nullable=True)


class Supervision(SQLModel, table=True):
    """A staff member supervising an active group."""

    __table_args__ = (
        sa.Index(
            "uq_supervision_open",
            "staff_id",
            "active_group_id",
            unique=True,
            **_open_only("ended_at"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    active_group_id: int = Field(foreign_key="active_group.id", index=True)
    started_at: datetime = _when()
    ended_at: datetime | None = _when(nullable=True)


class Visit(SQLModel, table=True):
    """A student's stay in an active group; at most one open visit per student."""

    __table_args__ = (
        sa.Index("uq_visit_open_student", "student_id", unique=True, **_open_only("exit_time")),
        sa.Index("ix_visit_open_group", "active_group_id", **_open_only("exit_time")),
        sa.Index("ix_visit_entry_time", "entry_time"),  # the attendance record of a day
    )
    id: int | None = Field(default=None, primary_key=True)
    student_id: int = Field(foreign_key="student.id")
    active_group_id: int = Field(foreign_key="active_group.id")
    entry_time: datetime = _when()
    exit_time: datetime | None = _when(nullable=True)
    # Who opened and closed it, for the attendance record: the source (rfid, manual,
    # automated), the reader for a scan, the staff member for a manual action. No foreign
    # key on the staff id: the record outlives a staff member's removal.
    entry_source: str | None = Field(default=None, max_length=16)
    entry_device_id: str | None = Field(default=None, max_length=64)
    entry_staff_id: int | None = None
    exit_source: str | None = Field(default=None, max_length=16)
    exit_device_id: str | None = Field(default=None, max_length=64)
    exit_staff_id: int | None = None
    exit_reason: str | None = Field(default=None, max_length=16)  # visits.ExitReason


class ProcessedScan(SQLModel, table=True):
    """A scan handled once; a redelivery of `(device_id, scan_id)` answers from here."""

    __tablename__ = "processed_scan"
    __table_args__ = (
        sa.Index("ix_processed_scan_debounce", "device_id", "tag", "scanned_at"),
        sa.Index("ix_processed_scan_processed_at", "processed_at"),  # pruning by age
    )
    device_id: str = Field(primary_key=True, max_length=64)
    scan_id: str = Field(primary_key=True, max_length=64)
    tag: str | None = Field(default=None, max_length=64)
    result: str = Field(max_length=32)
    message: str = Field(max_length=200)
    student_name: str | None = Field(default=None, max_length=200)
    accepted: bool = False
    scanned_at: datetime = _when()
    processed_at: datetime = _when()
    # The reader's own `ts`, as sent: a reused scan_id (a reader whose counter restarted)
    # is told from a redelivery by its tag and this time.
    reader_ts: datetime | None = _when(nullable=True)


class EventRecord(SQLModel, table=True):
    """The append-only event log behind SSE replay; ids strictly increase in commit order."""

    __tablename__ = "event_log"
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(max_length=32)
    active_group_id: int | None = None
    route_active_group_id: int | None = Field(default=None, index=True)
    route_ogs_group_id: int | None = Field(default=None, index=True)
    route_admin: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # The school whose streams may receive it (None: internal rows, routed to no one). No
    # foreign key: the log is replayed as it was written.
    school_id: int | None = None
    data: str
    created_at: datetime = _when(index=True)


class EventLogState(SQLModel, table=True):
    """One row: the highest event id pruned away; older `Last-Event-ID`s get a resync."""

    __tablename__ = "event_log_state"
    id: int = Field(default=1, primary_key=True)
    pruned_through_id: int = 0


# --- sign-in ----------------------------------------------------------------------------------


class RefreshToken(SQLModel, table=True):
    """An issued refresh token (by its `jti`); each is used once, rotation issues the next.

    Every token descends from one login (`family_id`). Presenting a used or revoked token
    again means it was stolen: the whole family is revoked. Logout revokes the family too.
    """

    __tablename__ = "refresh_token"
    jti: str = Field(primary_key=True, max_length=64)
    family_id: str = Field(max_length=64, index=True)
    staff_id: int = Field(foreign_key="staff.id", index=True, ondelete="CASCADE")
    issued_at: datetime = _when()
    expires_at: datetime = _when(index=True)
    used_at: datetime | None = _when(nullable=True)
    revoked_at: datetime | None = _when(nullable=True)


class LoginFailureWindow(SQLModel, table=True):
    """Failed logins counted for one limit key (an email) in its current window.

    Shared by every instance (api/ratelimit.py `StoredFailureWindows`): one atomic upsert
    per attempt counts it and says whether it is admitted; an expired window restarts.
    `key` is the SHA-256 of the limit key, so an email typed wrongly (or a password typed
    into the email field) is not stored as it was typed.
    """

    __tablename__ = "login_failure_window"
    key: str = Field(primary_key=True, max_length=64)
    window_start: datetime = _when(index=True)  # pruning by age
    failures: int = 0
