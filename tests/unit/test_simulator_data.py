"""Loading what the simulator knows: import files, the API, made-up schools (simulator/data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from simulator.data import (
    DataError,
    DeviceInfo,
    build_import_file,
    data_from_import,
    load_api_data,
    load_import_file,
)

IMPORT_FILE = {
    "rooms": [{"id": 1, "name": "Raum 101"}, {"id": 2, "name": "Turnhalle"}],
    "staff": [
        {"id": 1, "name": "Frau Schmidt", "email": "s@example.org", "tag": "a1:b2:c3:d4"},
        {"id": 2, "name": "Herr Ohnekarte", "email": "o@example.org"},
    ],
    "ogs_groups": [{"id": 7, "name": "Klasse 2b", "room_id": 1, "leader_ids": [1]}],
    "students": [
        {"id": 456, "first_name": "Max", "last_name": "Muster", "tag": "04-a1-b2-c3-d4"},
        {"id": 457, "first_name": "Emma", "last_name": "Klein"},
    ],
    "devices": [
        {"id": "reader-101", "room_id": 1, "active": True},
        {"id": "reader-gym", "room_id": 2},
    ],
    "active_groups": [{"id": 123, "name": "Fußball AG", "room_id": 1, "supervisor_ids": [1]}],
}


def test_import_file_gives_devices_with_room_names_and_string_ids() -> None:
    data = data_from_import(IMPORT_FILE)

    assert data.devices == (
        DeviceInfo(id="reader-101", room_id="1", room_name="Raum 101", active=True),
        DeviceInfo(id="reader-gym", room_id="2", room_name="Turnhalle", active=True),
    )


def test_import_file_cards_have_normalized_tags_and_cardless_people_are_skipped() -> None:
    data = data_from_import(IMPORT_FILE)

    assert [(c.person_id, c.tag, c.first_name) for c in data.students] == [
        ("456", "04A1B2C3D4", "Max")
    ]
    assert [(c.person_id, c.tag, c.is_staff) for c in data.staff] == [("1", "A1B2C3D4", True)]


def test_import_file_maps_rooms_to_their_active_group() -> None:
    assert data_from_import(IMPORT_FILE).active_groups == {"1": "123"}


def test_every_section_of_the_import_file_is_optional() -> None:
    data = data_from_import({})

    assert data.devices == () and data.students == () and data.active_groups == {}


def test_bad_tag_names_the_record_and_field_but_not_the_tag() -> None:
    raw = {"students": [{"id": 1, "first_name": "A", "tag": "04A1B2C3D4"}, {"id": 2, "tag": "xyz"}]}

    with pytest.raises(DataError, match=r"students\[1\]\.tag") as info:
        data_from_import(raw)

    assert "xyz" not in str(info.value)


def test_device_without_room_names_the_record_and_field() -> None:
    with pytest.raises(DataError, match=r"devices\[0\]\.room_id"):
        data_from_import({"devices": [{"id": "reader-1"}]})


def test_section_that_is_not_a_list_is_refused() -> None:
    with pytest.raises(DataError, match="rooms: must be a list"):
        data_from_import({"rooms": {"id": 1}})


def test_import_file_is_read_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "school.json"
    path.write_text(json.dumps(IMPORT_FILE), encoding="utf-8")

    assert load_import_file(path) == data_from_import(IMPORT_FILE)


def test_unreadable_import_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{nope", encoding="utf-8")

    with pytest.raises(DataError, match=r"broken\.json"):
        load_import_file(path)


def test_api_data_comes_from_devices_student_tags_and_active_groups() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("authorization")))
        bodies = {
            "/api/devices": [
                {"id": "reader-101", "room_id": "1", "room_name": "Raum 101", "active": True}
            ],
            "/api/students/tags": [
                {"student_id": "456", "student_name": "Max Muster", "tag": "04A1B2C3D4"}
            ],
            "/api/active/groups": [{"id": "123", "name": "Fußball AG", "room_id": "1"}],
        }
        return httpx.Response(200, json=bodies[request.url.path])

    data = load_api_data("http://api.test/", "T0KEN", transport=httpx.MockTransport(handler))

    assert data.devices == (DeviceInfo("reader-101", "1", "Raum 101", True),)
    assert [(c.person_id, c.first_name, c.tag) for c in data.students] == [
        ("456", "Max", "04A1B2C3D4")
    ]
    assert data.active_groups == {"1": "123"}
    assert data.staff == ()
    assert all(auth == "Bearer T0KEN" for _, auth in seen)


def test_api_refusal_is_a_data_error_naming_the_path() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(403, json={"detail": "no"}))

    with pytest.raises(DataError, match=r"GET /api/devices: HTTP 403"):
        load_api_data("http://api.test", "T0KEN", transport=transport)


def test_made_up_school_is_a_valid_import_file_with_one_room_left_without_a_group() -> None:
    raw = build_import_file(rooms=3, students=5, seed=1, password="pw")

    data = data_from_import(json.loads(json.dumps(raw)))

    assert len(data.devices) == 3 and len(data.students) == 5 and len(data.staff) == 4
    assert set(data.active_groups) == {"1", "2"}
    tags = [c.tag for c in (*data.students, *data.staff)]
    assert len(set(tags)) == len(tags)
    assert build_import_file(rooms=3, students=5, seed=1, password="pw") == raw
