"""Import files of several schools into one database: each file stays within its school.

Ids, staff emails and device ids are global, so a file naming one that another school holds
is refused with the record and field; references resolve within the file's school; tags
are unique per school. The fixture school (tests/fixtures/school.json, no `school` section)
is school 1, `second_school_document()` is school 2.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from edge_bridge.errors import ImportFileError
from edge_bridge.models import (
    ActiveGroup,
    Device,
    OgsGroup,
    OgsGroupLeader,
    RfidTag,
    Room,
    School,
    Staff,
    Student,
)
from edge_ops.importer import import_data
from tests.factories import SCHOOL, dump_tables, minimal_document, second_school_document

OWNED = (Room, Staff, OgsGroup, OgsGroupLeader, Student, RfidTag, Device, ActiveGroup)


def _import(engine: Engine, document: dict[str, Any]) -> None:
    import_data(engine, json.dumps(document))


def _refused(engine: Engine, document: dict[str, Any]) -> list[str]:
    """The problems of a refused file, after checking the refusal changed nothing."""
    before = dump_tables(engine)
    with pytest.raises(ImportFileError) as caught:
        _import(engine, document)
    assert dump_tables(engine) == before
    return caught.value.problems


def _school_ids(engine: Engine, model: type[SQLModel]) -> dict[int, int]:
    """How many rows of `model` each school owns."""
    table = model.__table__  # type: ignore[attr-defined]
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(table.c.school_id, sa.func.count()).group_by(table.c.school_id)
        ).all()
    return dict(rows)  # type: ignore[arg-type]


# --- two schools side by side -----------------------------------------------------------------


def test_a_second_school_imports_beside_the_first_with_reused_names_and_tags(
    school_engine: Engine,
) -> None:
    _import(school_engine, second_school_document())

    assert _school_ids(school_engine, Student) == {1: 60, 2: 2}
    assert _school_ids(school_engine, Room) == {1: 3, 2: 2}
    assert _school_ids(school_engine, RfidTag) == {1: 63, 2: 3}
    with Session(school_engine) as session:
        school = session.get(School, 2)
        assert school is not None
        assert (school.name, school.timezone) == ("Grundschule Am Park", "Europe/Vienna")
        for school_id, staff_id in ((1, 1), (2, 5)):  # one card number, one owner per school
            tag = session.get(RfidTag, (school_id, "A1B2C3D4"))
            assert tag is not None and tag.staff_id == staff_id
        student = session.get(Student, 400)
        assert student is not None and (student.school_id, student.ogs_group_id) == (2, 9)
        leader = session.get(OgsGroupLeader, (9, 5))
        assert leader is not None and leader.school_id == 2


def test_importing_school_b_never_changes_a_row_of_school_a(school_engine: Engine) -> None:
    before = dump_tables(school_engine)

    _import(school_engine, second_school_document())

    after = dump_tables(school_engine)
    for table, rows in before.items():
        missing = set(rows) - set(after[table])
        assert not missing, f"{table}: rows of school 1 changed or gone: {sorted(missing)[:3]}"
    for model in OWNED:
        assert _school_ids(school_engine, model).get(1, 0) == len(before[model.__tablename__])


def test_reimporting_either_school_changes_nothing(school_engine: Engine) -> None:
    _import(school_engine, second_school_document())
    before = dump_tables(school_engine)

    _import(school_engine, second_school_document())
    import_data(school_engine, SCHOOL.read_bytes())

    assert dump_tables(school_engine) == before


def test_a_file_without_a_school_goes_to_school_1_which_it_creates(engine: Engine) -> None:
    with engine.begin() as connection:  # the migration made school 1: start without it
        connection.execute(sa.delete(School.__table__))  # type: ignore[arg-type]

    _import(engine, minimal_document())

    with Session(engine) as session:
        school = session.get(School, 1)
        assert school is not None and (school.name, school.timezone) == ("Schule", None)
    for model in OWNED:
        assert set(_school_ids(engine, model)) == {1}, model.__tablename__


def test_the_school_row_is_upserted_by_id(school_engine: Engine) -> None:
    document = second_school_document()
    _import(school_engine, document)
    document["school"] = {"id": 2, "name": "Grundschule Am Stadtpark", "timezone": "Europe/Berlin"}

    _import(school_engine, document)

    with Session(school_engine) as session:
        schools = session.exec(select(School).order_by(School.id)).all()
    assert [(s.id, s.name, s.timezone) for s in schools] == [
        (1, "Schule", None),
        (2, "Grundschule Am Stadtpark", "Europe/Berlin"),
    ]


def test_a_school_without_a_time_zone_is_stored_without_one(engine: Engine) -> None:
    document = minimal_document()
    document["school"] = {"id": 3, "name": "Schule Nord"}

    _import(engine, document)

    with Session(engine) as session:
        school = session.get(School, 3)
        assert school is not None and school.timezone is None


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe", "europe/berlin", "../etc/passwd"])
def test_an_unknown_time_zone_is_refused_by_name(school_engine: Engine, zone: str) -> None:
    document = second_school_document()
    document["school"]["timezone"] = zone

    problems = _refused(school_engine, document)

    assert problems == [f"school.timezone: unknown time zone {zone!r}"]


# --- records and references of another school -----------------------------------------------


def _append(section: str, record: dict[str, Any]) -> dict[str, Any]:
    document = second_school_document()
    document[section].append(record)
    return document


def _set(section: str, field: str, value: Any) -> dict[str, Any]:
    document = second_school_document()
    document[section][0][field] = value
    return document


ANOTHER_SCHOOLS_RECORD = [
    (_append("rooms", {"id": 1, "name": "Aula"}), "rooms[2].id: room 1 belongs to another school"),
    (
        _append("staff", {"id": 1, "name": "Frau Neu", "email": "neu@park.example.org"}),
        "staff[2].id: staff member 1 belongs to another school",
    ),
    (
        _append("ogs_groups", {"id": 7, "name": "Klasse 4c"}),
        "ogs_groups[1].id: home group 7 belongs to another school",
    ),
    (
        _append("students", {"id": 401, "first_name": "Lea", "last_name": "Neu"}),
        "students[2].id: student 401 belongs to another school",
    ),
    (
        _append("devices", {"id": "reader-101", "room_id": 5}),
        "devices[2].id: device reader-101 belongs to another school",
    ),
    (
        _append("active_groups", {"id": 123, "name": "Malen", "room_id": 5}),
        "active_groups[1].id: active group 123 belongs to another school",
    ),
    (_set("ogs_groups", "room_id", 1), "ogs_groups[0].room_id: room 1 belongs to another school"),
    (
        _set("ogs_groups", "leader_ids", [5, 3]),
        "ogs_groups[0].leader_ids: staff member 3 belongs to another school",
    ),
    (
        _set("students", "ogs_group_id", 7),
        "students[0].ogs_group_id: home group 7 belongs to another school",
    ),
    (_set("devices", "room_id", 1), "devices[0].room_id: room 1 belongs to another school"),
    # room 2 runs school 1's group 123: only the room's school is named, not its group
    (
        _set("active_groups", "room_id", 2),
        "active_groups[0].room_id: room 2 belongs to another school",
    ),
    (
        _set("active_groups", "supervisor_ids", [2]),
        "active_groups[0].supervisor_ids: staff member 2 belongs to another school",
    ),
    (
        _set("staff", "email", "schmidt@example.org"),
        "staff[0].email: already used by a staff member of another school",
    ),
]


@pytest.mark.parametrize(
    ("document", "expected"), ANOTHER_SCHOOLS_RECORD, ids=[e for _, e in ANOTHER_SCHOOLS_RECORD]
)
def test_a_record_or_reference_of_another_school_is_refused_by_name_and_changes_nothing(
    school_engine: Engine, document: dict[str, Any], expected: str
) -> None:
    problems = _refused(school_engine, document)

    assert problems == [expected]


def test_a_file_without_a_school_may_not_name_ids_of_school_2(school_engine: Engine) -> None:
    _import(school_engine, second_school_document())
    document = {
        "rooms": [{"id": 4, "name": "Raum 101"}],
        "devices": [{"id": "reader-new", "room_id": 5}],
    }

    problems = _refused(school_engine, document)

    assert problems == [
        "rooms[0].id: room 4 belongs to another school",
        "devices[0].room_id: room 5 belongs to another school",
    ]


def test_every_problem_of_a_file_is_listed_at_once(school_engine: Engine) -> None:
    document = second_school_document()
    document["school"]["timezone"] = "Nowhere/Town"
    document["rooms"][0]["id"] = 1

    with pytest.raises(ImportFileError) as shape_error:  # the shape first: the time zone
        _import(school_engine, document)
    assert shape_error.value.problems == ["school.timezone: unknown time zone 'Nowhere/Town'"]

    document["school"]["timezone"] = None
    document["devices"][1]["room_id"] = 3
    document["staff"][1]["email"] = "admin@example.org"
    problems = _refused(school_engine, document)

    assert problems == [
        "rooms[0].id: room 1 belongs to another school",
        "ogs_groups[0].room_id: unknown rooms id 4",
        "devices[0].room_id: unknown rooms id 4",
        "devices[1].room_id: room 3 belongs to another school",
        "active_groups[0].room_id: unknown rooms id 4",
        "staff[1].email: already used by a staff member of another school",
    ]


def test_references_resolve_to_the_schools_own_rows_in_the_database(
    school_engine: Engine,
) -> None:
    document = second_school_document()
    _import(school_engine, {"school": document["school"], "rooms": document["rooms"]})

    _import(school_engine, {"school": document["school"], "devices": document["devices"]})

    with Session(school_engine) as session:
        device = session.get(Device, "park-101")
        assert device is not None and (device.school_id, device.room_id) == (2, 4)


def test_the_rooms_of_one_school_may_run_groups_beside_another_schools(
    school_engine: Engine,
) -> None:
    _import(school_engine, second_school_document())

    with Session(school_engine) as session:
        running = session.exec(
            select(ActiveGroup.id, ActiveGroup.school_id).where(ActiveGroup.ended_at.is_(None))  # type: ignore[union-attr]
        ).all()
    assert sorted(running) == [(123, 1), (124, 1), (125, 2)]


def test_a_second_running_group_in_a_room_of_the_school_is_still_refused(
    school_engine: Engine,
) -> None:
    _import(school_engine, second_school_document())
    document = second_school_document()
    document["active_groups"] = [{"id": 126, "name": "Malen", "room_id": 4}]

    problems = _refused(school_engine, document)

    assert problems == ["active_groups[0].room_id: room 4 already has running active group 125"]


# --- emails and tags ----------------------------------------------------------------------------


def test_an_email_of_the_same_school_still_names_its_staff_member(school_engine: Engine) -> None:
    _import(school_engine, second_school_document())
    document = second_school_document()
    document["staff"][1]["email"] = "schmidt@park.example.org"

    problems = _refused(school_engine, document)

    assert problems == [
        "staff[1].email: duplicate of staff[0]",
        "staff[1].email: already used by staff id 5",
    ]


def test_a_tag_is_still_unique_within_its_school(school_engine: Engine) -> None:
    _import(school_engine, second_school_document())
    document = second_school_document()
    document["staff"] = []
    document["ogs_groups"][0]["leader_ids"] = []
    document["active_groups"] = []
    document["students"].append(
        {"id": 462, "first_name": "Tom", "last_name": "Neu", "tag": "A1B2C3D4"}  # staff 5's
    )
    document["students"][1]["tag"] = "04A1B20000"  # also students[0]'s in this file

    problems = _refused(school_engine, document)

    assert problems == [
        "students[1].tag: duplicate tag, also used by students[0].tag",
        "students[2].tag: tag already belongs to another person",
    ]


def test_a_tag_of_another_school_is_free_in_this_one(school_engine: Engine) -> None:
    document = second_school_document()
    document["students"][1]["tag"] = "04A1B20007"  # school 1's student 408 has it

    _import(school_engine, document)

    with Session(school_engine) as session:
        theirs = session.get(RfidTag, (1, "04A1B20007"))
        ours = session.get(RfidTag, (2, "04A1B20007"))
    assert theirs is not None and ours is not None
    assert (theirs.student_id, ours.student_id) == (408, 461)


def test_an_activity_started_after_an_import_gets_an_id_past_the_imported_ones(
    school_engine: Engine,
) -> None:
    """PostgreSQL's sequence does not see explicit ids: without the importer moving it on,
    the first activities started at runtime got ids 1, 2, … and later collided with
    imported ones (123)."""
    from edge_bridge.models import utcnow
    from edge_bridge.store import Store
    from edge_bridge.visits import start_activity

    with Session(school_engine) as session:
        imported = max(group.id for group in session.exec(select(ActiveGroup)).all() if group.id)
    store = Store(school_engine)
    started = store.commit_blocking(
        lambda tx: (
            start_activity(tx, school_id=1, name="Malen", room_id=3, staff_id=3, at=utcnow()).id
        )
    ).result

    assert started is not None and started > imported
