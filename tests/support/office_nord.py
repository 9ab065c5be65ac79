"""School 2 for the office view's tests: "Schule Nord", in New York's time zone on purpose.

It sits beside the fixture school (school 1, Europe/Berlin, tests/fixtures/school.json).
Some names overlap school 1's ("Raum 101", "Frau Schmidt", "Max Muster", "Klasse 2b"), some
are its own (`MARKERS`: a test that finds one of these in school 1's answers found a leak),
its tags reuse school 1's values, and its ids are its own, between and after school 1's
(ids, emails and device ids are global).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from edge_ops.importer import import_data

NORD = 2
NORD_TIMEZONE = "America/New_York"
SUPERVISOR, ADMIN = 5, 6
ROOM_101, NORDFLUR = 4, 5  # school 1 has rooms 1-3
KLASSE_2B, KLASSE_NORD = 9, 10  # school 1 has home groups 7 and 8
MAX, NORA = 461, 462  # school 1 has students 401-460
FOOTBALL, NORDLAUF = 125, 126  # school 1 has active groups 123 and 124
DEVICES = ["nord-101", "nord-flur"]
MARKERS = ["Schule Nord", "Nordflur", "Klasse Nord", "Nora", "Nordlicht", "Nordlauf", "nord-"]


def nord_document() -> dict[str, Any]:
    """School 2's import file."""
    return {
        "school": {"id": NORD, "name": "Schule Nord", "timezone": NORD_TIMEZONE},
        "rooms": [{"id": ROOM_101, "name": "Raum 101"}, {"id": NORDFLUR, "name": "Nordflur"}],
        "staff": [
            {
                "id": SUPERVISOR,
                "name": "Frau Schmidt",
                "email": "schmidt@nord.example.org",
                "password": "nord-demo-5",
                "tag": "A1B2C3D4",
            },
            {
                "id": ADMIN,
                "name": "Büro Nord",
                "email": "admin@nord.example.org",
                "password": "nord-demo-6",
                "admin": True,
            },
        ],
        "ogs_groups": [
            {"id": KLASSE_2B, "name": "Klasse 2b", "room_id": ROOM_101, "leader_ids": [SUPERVISOR]},
            {"id": KLASSE_NORD, "name": "Klasse Nord", "room_id": NORDFLUR, "leader_ids": []},
        ],
        "students": [
            {
                "id": MAX,
                "first_name": "Max",
                "last_name": "Muster",
                "tag": "04A1B20000",
                "ogs_group_id": KLASSE_2B,
            },
            {
                "id": NORA,
                "first_name": "Nora",
                "last_name": "Nordlicht",
                "tag": "04A1B20001",
                "ogs_group_id": KLASSE_NORD,
            },
        ],
        "devices": [
            {"id": DEVICES[0], "room_id": ROOM_101, "active": True},
            {"id": DEVICES[1], "room_id": NORDFLUR, "active": True},
        ],
        "active_groups": [
            {
                "id": FOOTBALL,
                "name": "Fußball AG",
                "room_id": ROOM_101,
                "supervisor_ids": [SUPERVISOR],
            },
            {
                "id": NORDLAUF,
                "name": "Nordlauf",
                "room_id": NORDFLUR,
                "supervisor_ids": [SUPERVISOR],
            },
        ],
    }


def import_nord(engine: Engine) -> None:
    """Import school 2 into a database that holds the fixture school."""
    import_data(engine, json.dumps(nord_document()).encode())
