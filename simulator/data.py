"""What the simulator knows about the school: devices, cards, and rooms with an active group.

Loaded from an import file (CONTRACT §7) or from a running API. `build_import_file` writes a
small made-up school in the same format, so a demo or a test can import it and then simulate it.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edge_bridge.wire import normalize_tag

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """The import file or the API answer cannot be used; the message names record and field."""


@dataclass(frozen=True)
class DeviceInfo:
    """One reader and the room it hangs in."""

    id: str
    room_id: str
    room_name: str
    active: bool = True


@dataclass(frozen=True)
class Card:
    """A known card: a student's or a staff member's."""

    tag: str
    person_id: str
    name: str
    first_name: str
    is_staff: bool = False


@dataclass(frozen=True)
class SimData:
    """Everything a scenario needs; ids are strings, tags are normalized."""

    devices: tuple[DeviceInfo, ...] = ()
    students: tuple[Card, ...] = ()
    staff: tuple[Card, ...] = ()
    # room id → active group id, for rooms that have an active group now
    active_groups: Mapping[str, str] = field(default_factory=dict)


def load_import_file(path: str | Path) -> SimData:
    """Read an import file (CONTRACT §7) from disk."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"import file {path}: {exc}"
        raise DataError(msg) from None
    return data_from_import(raw)


def data_from_import(raw: Mapping[str, Any]) -> SimData:
    """Turn an import-file dict into SimData. Records without a tag are skipped."""
    if not isinstance(raw, Mapping):
        msg = "import file: top level must be a JSON object"
        raise DataError(msg)
    rooms = {_id(r, "rooms", i): str(r.get("name", "")) for i, r in _records(raw, "rooms")}
    devices = tuple(
        DeviceInfo(
            id=_id(d, "devices", i),
            room_id=(room_id := _field(d, "devices", i, "room_id")),
            room_name=rooms.get(room_id, f"Raum {room_id}"),
            active=bool(d.get("active", True)),
        )
        for i, d in _records(raw, "devices")
    )
    students = tuple(
        Card(
            tag=_tag(s, "students", i),
            person_id=_id(s, "students", i),
            name=f"{s.get('first_name', '')} {s.get('last_name', '')}".strip(),
            first_name=str(s.get("first_name", "")),
        )
        for i, s in _records(raw, "students")
        if s.get("tag")
    )
    staff = tuple(
        Card(
            tag=_tag(s, "staff", i),
            person_id=_id(s, "staff", i),
            name=str(s.get("name", "")),
            first_name=str(s.get("name", "")).split(" ")[-1],
            is_staff=True,
        )
        for i, s in _records(raw, "staff")
        if s.get("tag")
    )
    groups = {
        _field(g, "active_groups", i, "room_id"): _id(g, "active_groups", i)
        for i, g in _records(raw, "active_groups")
    }
    return SimData(devices=devices, students=students, staff=staff, active_groups=groups)


def load_api_data(
    api_url: str, token: str, *, transport: httpx.BaseTransport | None = None
) -> SimData:
    """Fetch devices, student tags and active groups from a running API (admin token).

    The API does not hand out staff tags, so a scenario built from it has no staff scans.
    """
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=api_url.rstrip("/"), headers=headers, timeout=10.0, transport=transport
    ) as client:
        devices_raw = _get_list(client, "/api/devices")
        tags_raw = _get_list(client, "/api/students/tags")
        groups_raw = _get_list(client, "/api/active/groups", params={"all": "1"})
    devices = tuple(
        DeviceInfo(
            id=_id(d, "devices", i),
            room_id=(room_id := _field(d, "devices", i, "room_id")),
            room_name=str(d.get("room_name") or f"Raum {room_id}"),
            active=bool(d.get("active", True)),
        )
        for i, d in enumerate(devices_raw)
    )
    students = tuple(
        Card(
            tag=_tag(s, "students", i),
            person_id=_field(s, "students", i, "student_id"),
            name=(name := str(s.get("student_name", ""))),
            first_name=name.split(" ")[0],
        )
        for i, s in enumerate(tags_raw)
        if s.get("tag")
    )
    groups = {
        _field(g, "active_groups", i, "room_id"): _id(g, "active_groups", i)
        for i, g in enumerate(groups_raw)
        if g.get("room_id") is not None
    }
    logger.info(
        "Loaded data from API devices=%d students=%d active_groups=%d",
        len(devices),
        len(students),
        len(groups),
    )
    return SimData(devices=devices, students=students, active_groups=groups)


def build_import_file(
    *, rooms: int = 4, students: int = 24, seed: int = 1, closed_rooms: int = 1, password: str
) -> dict[str, Any]:
    """A made-up school in import-file format: one reader per room, an active group in every
    room except the last `closed_rooms`, one staff member per room plus an admin."""
    rng = random.Random(seed)
    first = ["Max", "Emma", "Paul", "Mia", "Ben", "Lina", "Finn", "Lea", "Noah", "Ida", "Tom"]
    last = ["Muster", "Schulz", "Becker", "Wagner", "Hoffmann", "Koch", "Richter", "Klein"]
    room_ids = list(range(1, rooms + 1))
    used: set[str] = set()

    def new_tag(length: int) -> str:
        while (tag := "".join(rng.choice("0123456789ABCDEF") for _ in range(length))) in used:
            pass
        used.add(tag)
        return tag

    staff = [
        {
            "id": i,
            "name": f"Frau {last[i % len(last)]}" if i % 2 else f"Herr {last[i % len(last)]}",
            "email": f"staff{i}@example.org",
            "password": password,
            "admin": i == 1,
            "tag": new_tag(8),
        }
        for i in range(1, rooms + 2)
    ]
    open_rooms = room_ids[: max(0, rooms - closed_rooms)]
    return {
        "rooms": [{"id": r, "name": f"Raum {100 + r}"} for r in room_ids],
        "staff": staff,
        "ogs_groups": [{"id": 1, "name": "Klasse 2b", "room_id": 1, "leader_ids": [1]}],
        "students": [
            {
                "id": 100 + i,
                "first_name": rng.choice(first),
                "last_name": rng.choice(last),
                "tag": "04" + new_tag(8),
                "ogs_group_id": 1,
            }
            for i in range(1, students + 1)
        ],
        "devices": [{"id": f"reader-{100 + r}", "room_id": r, "active": True} for r in room_ids],
        "active_groups": [
            {"id": 10 + r, "name": f"AG Raum {100 + r}", "room_id": r, "supervisor_ids": [r]}
            for r in open_rooms
        ],
    }


def _records(raw: Mapping[str, Any], section: str) -> list[tuple[int, Mapping[str, Any]]]:
    items = raw.get(section) or []
    if not isinstance(items, list):
        msg = f"{section}: must be a list"
        raise DataError(msg)
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            msg = f"{section}[{i}]: must be an object"
            raise DataError(msg)
    return list(enumerate(items))


def _field(record: Mapping[str, Any], section: str, index: int, name: str) -> str:
    value = record.get(name)
    if value is None or isinstance(value, bool) or not isinstance(value, int | str):
        msg = f"{section}[{index}].{name}: missing or not an id, got {value!r}"
        raise DataError(msg)
    return str(value)


def _id(record: Mapping[str, Any], section: str, index: int) -> str:
    return _field(record, section, index, "id")


def _tag(record: Mapping[str, Any], section: str, index: int) -> str:
    value = record.get("tag")
    try:
        return normalize_tag(value if isinstance(value, str) else "")
    except ValueError:
        # The tag itself stays out of the message: tags are never logged.
        msg = f"{section}[{index}].tag: not 8-64 hex characters"
        raise DataError(msg) from None


def _get_list(client: httpx.Client, path: str, **kwargs: Any) -> list[Mapping[str, Any]]:
    try:
        response = client.get(path, **kwargs)
    except httpx.HTTPError as exc:
        msg = f"GET {path}: {exc}"
        raise DataError(msg) from None
    if response.status_code != 200:
        msg = f"GET {path}: HTTP {response.status_code}"
        raise DataError(msg)
    body = response.json()
    if not isinstance(body, list) or not all(isinstance(item, Mapping) for item in body):
        msg = f"GET {path}: expected a JSON list of objects"
        raise DataError(msg)
    return body
