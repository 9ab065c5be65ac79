"""The migrations build exactly the schema the models describe, run down and up again, and
move a database of the previous revision forward without losing a row."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

import edge_bridge.models  # noqa: F401  (registers the tables)
from edge_bridge.db import alembic_config, make_engine
from edge_bridge.models import ActiveGroup, EventRecord, RfidTag, School, Student, Visit
from tests.conftest import POSTGRES_ADMIN_URL, _postgres_database


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def test_the_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert _differences(engine) == []


def test_every_migration_can_be_undone_and_redone(engine: Engine) -> None:
    config = alembic_config(engine)

    command.downgrade(config, "base")
    command.upgrade(config, "head")

    assert _differences(engine) == []


# --- upgrade of a database the previous revision (0004, one school) built ----------------------

T0 = datetime(2026, 11, 26, 12, 0)  # naive UTC, as the database stores it
OWNED_TABLES = (
    "room",
    "staff",
    "ogs_group",
    "ogs_group_leader",
    "student",
    "rfid_tag",
    "device",
    "active_group",
)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# A realistic afternoon of one school as revision 0004 stored it: group 124 ran and ended,
# group 123 runs; student 401 went from 124 to 123 (open visit), 402 was checked out when
# 124 ended; the log holds visit, activity, admin and internal rows.
OLD_ROWS: dict[str, list[dict[str, Any]]] = {
    "room": [{"id": 1, "name": "Raum 101"}, {"id": 2, "name": "Turnhalle"}],
    "staff": [
        {"id": 1, "name": "Frau Schmidt", "email": "schmidt@example.org", "admin": False},
        {"id": 2, "name": "Herr Yilmaz", "email": "yilmaz@example.org", "admin": False},
        {"id": 3, "name": "Büro", "email": "admin@example.org", "admin": True},
    ],
    "ogs_group": [{"id": 7, "name": "Klasse 2b", "room_id": 1}],
    "ogs_group_leader": [{"ogs_group_id": 7, "staff_id": 1}],
    "student": [
        {"id": 401, "first_name": "Max", "last_name": "Muster", "ogs_group_id": 7},
        {"id": 402, "first_name": "Emma", "last_name": "Schulz", "ogs_group_id": 7},
        {"id": 403, "first_name": "Paul", "last_name": "Neu", "ogs_group_id": None},
    ],
    "rfid_tag": [
        {"tag": "A1B2C3D4", "staff_id": 1, "student_id": None},
        {"tag": "A1B2C3D5", "staff_id": 2, "student_id": None},
        {"tag": "04A1B20000", "staff_id": None, "student_id": 401},
        {"tag": "04A1B20001", "staff_id": None, "student_id": 402},
    ],
    "device": [
        {"id": "reader-101", "room_id": 1, "active": True, "online": True},
        {"id": "reader-turnhalle", "room_id": 2, "active": True, "online": False},
    ],
    "active_group": [
        {"id": 123, "name": "Fußball AG", "room_id": 2, "started_at": _at(30), "ended_at": None},
        {
            "id": 124,
            "name": "Hausaufgaben",
            "room_id": 1,
            "started_at": _at(0),
            "ended_at": _at(60),
        },
    ],
    "supervision": [
        {"id": 1, "staff_id": 1, "active_group_id": 124, "started_at": _at(0), "ended_at": _at(60)},
        {"id": 2, "staff_id": 2, "active_group_id": 123, "started_at": _at(30), "ended_at": None},
    ],
    "visit": [
        {
            "id": 1,
            "student_id": 401,
            "active_group_id": 124,
            "entry_time": _at(5),
            "exit_time": _at(40),
            "entry_source": "rfid",
            "entry_device_id": "reader-101",
            "exit_source": "rfid",
            "exit_device_id": "reader-turnhalle",
            "exit_reason": "transfer",
        },
        {
            "id": 2,
            "student_id": 401,
            "active_group_id": 123,
            "entry_time": _at(40),
            "entry_source": "rfid",
            "entry_device_id": "reader-turnhalle",
        },
        {
            "id": 3,
            "student_id": 402,
            "active_group_id": 124,
            "entry_time": _at(10),
            "exit_time": _at(60),
            "entry_source": "manual",
            "entry_staff_id": 1,
            "exit_source": "automated",
            "exit_staff_id": 1,
            "exit_reason": "activity_end",
        },
    ],
    "event_log": [
        {"id": 1, "type": "activity_start", "active_group_id": 124, "route_active_group_id": 124},
        {"id": 2, "type": "staff_changed", "data": '{"phase":"gain","staff":{"1":[[124],[7]]}}'},
        {
            "id": 3,
            "type": "student_checkin",
            "active_group_id": 124,
            "route_active_group_id": 124,
            "route_ogs_group_id": 7,
            "data": '{"student_id":"401","student_name":"Max Muster","source":"rfid"}',
        },
        {"id": 4, "type": "occupancy", "route_admin": True, "data": '{"room_id":"1"}'},
        {"id": 5, "type": "device_status", "route_admin": True, "data": '{"online":true}'},
        {"id": 6, "type": "staff_changed", "data": '{"phase":"settle","staff":{"1":[[],[7]]}}'},
        {"id": 7, "type": "activity_end", "active_group_id": 124, "route_active_group_id": 124},
    ],
    "event_log_state": [{"id": 1, "pruned_through_id": 0}],
    "processed_scan": [
        {
            "device_id": "reader-101",
            "scan_id": "1",
            "tag": "04A1B20000",
            "result": "checked_in",
            "message": "Hallo Max!",
            "student_name": "Max Muster",
            "accepted": True,
            "scanned_at": _at(5),
            "processed_at": _at(5),
            "reader_ts": _at(5),
        },
        {
            "device_id": "reader-101",
            "scan_id": "2",
            "tag": "0BADC0DE",
            "result": "unknown_tag",
            "message": "Karte unbekannt",
            "accepted": False,
            "scanned_at": _at(6),
            "processed_at": _at(6),
        },
    ],
    "refresh_token": [
        {
            "jti": "jti-1",
            "family_id": "family-1",
            "staff_id": 1,
            "issued_at": _at(0),
            "expires_at": _at(60),
        }
    ],
    "login_failure_window": [{"key": "f" * 64, "window_start": _at(1), "failures": 2}],
}
EVENT_DEFAULTS = {
    "active_group_id": None,
    "route_active_group_id": None,
    "route_ogs_group_id": None,
    "route_admin": False,
    "data": "{}",
}


def _old_rows(table: str) -> list[dict[str, Any]]:
    rows = OLD_ROWS[table]
    if table == "event_log":
        return [{**EVENT_DEFAULTS, "created_at": _at(row["id"]), **row} for row in rows]
    return rows


Snapshot = dict[str, list[tuple[str, ...]]]


def _snapshot(connection: Connection, columns: dict[str, list[str]]) -> Snapshot:
    """These columns of every row of these tables, as stored (reprs, so None sorts), sorted."""
    snapshot: Snapshot = {}
    for table, names in columns.items():
        query = sa.select(*(sa.column(name) for name in names)).select_from(sa.table(table))
        snapshot[table] = sorted(tuple(map(repr, row)) for row in connection.execute(query))
    return snapshot


@pytest.fixture
def empty_engine(tmp_path: Path) -> Iterator[Engine]:
    """An empty database of its own, not migrated at all."""
    if not POSTGRES_ADMIN_URL:
        created = make_engine(f"sqlite:///{tmp_path / 'previous.db'}")
        yield created
        created.dispose()
        return
    with _postgres_database("edge_upgrade") as (_name, url):
        created = make_engine(url)
        yield created
        created.dispose()


Upgraded = tuple[Engine, dict[str, list[str]], Snapshot]  # engine, 0004's columns, its rows


@pytest.fixture
def upgraded(empty_engine: Engine) -> Iterator[Upgraded]:
    """A database built by revision 0004 and filled as it stored a school, then upgraded to
    head; with the 0004 columns of each table and a snapshot of every row as 0004 had it."""
    command.upgrade(alembic_config(empty_engine), "0004")
    old = sa.MetaData()
    old.reflect(empty_engine)  # the 0004 tables: no school anywhere
    assert "school" not in old.tables and "school_id" not in old.tables["room"].c
    with empty_engine.begin() as connection:
        for name in OLD_ROWS:  # in dependency order
            for row in _old_rows(name):  # one by one: the rows leave out different columns
                connection.execute(old.tables[name].insert().values(row))
        if empty_engine.dialect.name == "postgresql":  # rows came with ids: move sequences on
            for name in ("active_group", "supervision", "visit", "event_log"):
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                    f"(SELECT max(id) FROM {name}))"
                )
    columns = {
        name: [column.name for column in table.c]
        for name, table in old.tables.items()
        if name != "alembic_version"
    }
    with empty_engine.connect() as connection:
        before = _snapshot(connection, columns)

    command.upgrade(alembic_config(empty_engine), "head")

    yield empty_engine, columns, before


def _column_values(engine: Engine, table: str, column: str) -> list[Any]:
    with engine.connect() as connection:
        query = sa.text(f"SELECT {column} FROM {table} ORDER BY 1")
        return list(connection.execute(query).scalars().all())


def test_upgrading_keeps_every_row_with_its_values(upgraded: Upgraded) -> None:
    engine, columns, before = upgraded

    with engine.connect() as connection:
        after = _snapshot(connection, columns)

    assert after == before
    assert {name: len(rows) for name, rows in before.items()} == {
        name: len(rows) for name, rows in OLD_ROWS.items()
    }
    assert len(after["visit"]) == 3 and len(after["event_log"]) == 7
    with Session(engine) as session:  # and today's models read them as they were written
        visits = {visit.id: visit for visit in session.exec(select(Visit))}
        events = {event.id: event for event in session.exec(select(EventRecord))}
    for model_rows, expected_rows in (
        (visits, OLD_ROWS["visit"]),
        (events, _old_rows("event_log")),
    ):
        for expected in expected_rows:
            row = model_rows[expected["id"]]
            for name, value in expected.items():
                wanted = value.replace(tzinfo=UTC) if isinstance(value, datetime) else value
                assert getattr(row, name) == wanted, (type(row).__name__, row.id, name)


def test_upgrading_puts_every_owned_row_into_school_1(upgraded: Upgraded) -> None:
    engine, _columns, _before = upgraded

    for table in OWNED_TABLES:
        assert set(_column_values(engine, table, "school_id")) == {1}, table
    with Session(engine) as session:
        school = session.get(School, 1)
        assert school is not None and (school.name, school.timezone) == ("Schule", None)
    with engine.connect() as connection:
        query = sa.text("SELECT type, school_id FROM event_log ORDER BY id")
        events = [(kind, school_id) for kind, school_id in connection.execute(query)]
    assert [school for kind, school in events if kind == "staff_changed"] == [None, None]
    assert [school for kind, school in events if kind != "staff_changed"] == [1] * 5


def test_the_upgraded_schema_matches_the_models(
    upgraded: Upgraded,
) -> None:
    engine, _columns, _before = upgraded

    assert _differences(engine) == []


def test_after_the_upgrade_a_student_still_has_at_most_one_open_visit(
    upgraded: Upgraded,
) -> None:
    engine, _columns, _before = upgraded
    with Session(engine) as session:
        session.add(
            Visit(student_id=401, active_group_id=124, entry_time=_utc(90), exit_time=_utc(95))
        )
        session.commit()  # a closed one: the index is still partial
        session.add(Visit(student_id=401, active_group_id=124, entry_time=_utc(100)))

        with pytest.raises(IntegrityError, match=r"(?i)unique"):
            session.commit()


def test_after_the_upgrade_a_room_still_runs_at_most_one_group(
    upgraded: Upgraded,
) -> None:
    engine, _columns, _before = upgraded
    with Session(engine) as session:
        # room 1's group 124 ended: a new one may start there, and an ended one may sit in 2
        session.add(ActiveGroup(school_id=1, name="Malen", room_id=1, started_at=_utc(90)))
        session.add(
            ActiveGroup(
                school_id=1, name="Basteln", room_id=2, started_at=_utc(0), ended_at=_utc(20)
            )
        )
        session.commit()
        session.add(ActiveGroup(school_id=1, name="Tanzen", room_id=2, started_at=_utc(90)))

        with pytest.raises(IntegrityError, match=r"(?i)unique"):
            session.commit()


def test_after_the_upgrade_tags_are_found_by_school_and_free_in_another(
    upgraded: Upgraded,
) -> None:
    engine, _columns, _before = upgraded
    with Session(engine) as session:
        tag = session.get(RfidTag, (1, "04A1B20000"))
        staff_tag = session.get(RfidTag, (1, "A1B2C3D4"))
        assert tag is not None and (tag.student_id, tag.staff_id) == (401, None)
        assert staff_tag is not None and (staff_tag.staff_id, staff_tag.student_id) == (1, None)

        for row in (
            School(id=2, name="Grundschule Am Park"),
            Student(id=500, school_id=2, first_name="Max", last_name="Muster"),
            RfidTag(school_id=2, tag="04A1B20000", student_id=500),
        ):
            session.add(row)
            session.flush()
        session.commit()

        assert session.get(RfidTag, (2, "04A1B20000")) is not None
        again = session.get(RfidTag, (1, "04A1B20000"))
        assert again is not None and again.student_id == 401


def test_after_the_upgrade_references_stay_within_a_school(
    upgraded: Upgraded,
) -> None:
    engine, _columns, _before = upgraded
    with Session(engine) as session:
        session.add(School(id=2, name="Grundschule Am Park"))
        session.commit()
        session.add(Student(id=500, school_id=2, first_name="Lea", last_name="Neu", ogs_group_id=7))

        with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            session.commit()


def test_after_the_upgrade_new_events_follow_the_old_ids(
    upgraded: Upgraded,
) -> None:
    engine, _columns, _before = upgraded
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO event_log (type, route_admin, school_id, data, created_at) "
                "VALUES ('occupancy', :admin, 1, '{}', :created_at)"
            ),
            {"admin": True, "created_at": _at(120)},
        )

    assert _column_values(engine, "event_log", "id") == [1, 2, 3, 4, 5, 6, 7, 8]


def _utc(minutes: int) -> datetime:
    return _at(minutes).replace(tzinfo=UTC)
