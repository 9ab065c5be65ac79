"""Import file → database: all or nothing, idempotent, errors name the record and field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from edge_bridge.errors import ImportFileError
from edge_bridge.models import (
    ActiveGroup,
    Device,
    OgsGroupLeader,
    RfidTag,
    Staff,
    Student,
    Supervision,
)
from edge_bridge.passwords import verify_password
from edge_ops.importer import import_data
from tests.factories import dump_tables, minimal_document, school_document


def _count(engine: Engine, model: type[Any]) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_the_fixture_school_loads(engine: Engine) -> None:
    summary = import_data(engine, json.dumps(school_document()))

    assert (summary.rooms, summary.staff, summary.students) == (3, 4, 60)
    assert (summary.devices, summary.active_groups) == (4, 2)
    assert _count(engine, Student) == 60
    assert _count(engine, RfidTag) == 63
    assert _count(engine, Supervision) == 2
    assert _count(engine, OgsGroupLeader) == 2


def test_reimporting_the_same_file_changes_nothing(engine: Engine) -> None:
    raw = json.dumps(school_document())
    import_data(engine, raw)
    before = dump_tables(engine)

    import_data(engine, raw)

    assert dump_tables(engine) == before


def test_passwords_are_stored_hashed_only(engine: Engine) -> None:
    import_data(engine, json.dumps(minimal_document()))

    with Session(engine) as session:
        staff = session.get(Staff, 1)
    assert staff is not None and staff.password_hash is not None
    assert "correct horse" not in staff.password_hash
    assert verify_password("correct horse", staff.password_hash)


def test_tags_are_stored_normalized(engine: Engine) -> None:
    document = minimal_document()
    document["students"][0]["tag"] = "04:a1-b2 c3:d4"

    import_data(engine, json.dumps(document))

    with Session(engine) as session:
        assert session.get(RfidTag, (1, "04A1B2C3D4")) is not None


def _mutate(path: str, value: Any) -> dict[str, Any]:
    document = minimal_document()
    section, index, field = path.split(".")
    document[section][int(index)][field] = value
    return document


BAD_RECORDS = [
    (_mutate("students.0.tag", "XYZ"), "students[0].tag: not 8-64 hex characters"),
    (_mutate("students.0.tag", "A1B2C3D4"), "students[0].tag: duplicate tag"),
    (_mutate("devices.0.room_id", 99), "devices[0].room_id: unknown rooms id 99"),
    (
        _mutate("active_groups.0.supervisor_ids", [1, 42]),
        "active_groups[0].supervisor_ids: unknown staff id 42",
    ),
    (_mutate("ogs_groups.0.leader_ids", [42]), "ogs_groups[0].leader_ids: unknown staff id 42"),
    (_mutate("students.0.ogs_group_id", 99), "students[0].ogs_group_id: unknown ogs_groups id 99"),
    (_mutate("students.0.first_name", ""), "students[0].first_name"),
    (_mutate("staff.0.email", "not-an-email"), "staff[0].email"),
    (_mutate("devices.0.id", "reader/101"), "devices[0].id"),
    (_mutate("rooms.0.id", "one"), "rooms[0].id"),
    (_mutate("students.0.surprise", 1), "students[0].surprise"),
]


@pytest.mark.parametrize(("document", "expected"), BAD_RECORDS, ids=[e for _, e in BAD_RECORDS])
def test_a_bad_record_is_refused_by_name_and_changes_nothing(
    school_engine: Engine, document: dict[str, Any], expected: str
) -> None:
    before = dump_tables(school_engine)

    with pytest.raises(ImportFileError) as caught:
        import_data(school_engine, json.dumps(document))

    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value
    assert dump_tables(school_engine) == before


def test_a_tag_owned_by_someone_in_the_database_is_refused(school_engine: Engine) -> None:
    document = minimal_document()
    document["students"][0]["id"] = 9999
    document["students"][0]["tag"] = "04A1B20001"  # belongs to student 402 of the school
    document["staff"][0]["tag"] = None
    document["staff"][0]["email"] = "new@example.org"
    document["staff"][0]["id"] = 50
    document["active_groups"] = []
    document["ogs_groups"][0]["leader_ids"] = [50]
    before = dump_tables(school_engine)

    with pytest.raises(ImportFileError, match=r"students\[0\]\.tag: tag already belongs"):
        import_data(school_engine, json.dumps(document))

    assert dump_tables(school_engine) == before


def test_a_second_running_group_in_one_room_is_refused(engine: Engine) -> None:
    document = minimal_document()
    document["active_groups"].append({"id": 124, "name": "Malen", "room_id": 1})

    with pytest.raises(ImportFileError, match=r"active_groups\[1\]\.room_id"):
        import_data(engine, json.dumps(document))

    assert _count(engine, ActiveGroup) == 0


def test_a_file_that_is_not_json_gets_a_clear_error(engine: Engine) -> None:
    with pytest.raises(ImportFileError, match="file: not valid JSON"):
        import_data(engine, b"{rooms: [")

    assert _count(engine, Device) == 0


def test_a_json_array_is_refused(engine: Engine) -> None:
    with pytest.raises(ImportFileError, match="must be a JSON object"):
        import_data(engine, "[]")


def test_every_section_is_optional(engine: Engine) -> None:
    summary = import_data(engine, json.dumps({"rooms": [{"id": 5, "name": "Aula"}]}))

    assert summary.rooms == 1
    assert summary.students == 0


def test_reimport_moves_a_tag_and_leaves_no_stale_owner(engine: Engine) -> None:
    document = minimal_document()
    import_data(engine, json.dumps(document))
    document["students"][0]["tag"] = "04FFFFFFFF"

    import_data(engine, json.dumps(document))

    with Session(engine) as session:
        assert session.get(RfidTag, (1, "04A1B2C3D4")) is None
        moved = session.get(RfidTag, (1, "04FFFFFFFF"))
        assert moved is not None and moved.student_id == 456
