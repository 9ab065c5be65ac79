"""Schule Nord (school 2), beside the fixture school (school 1), for the tests of tokens, the
operator's school list and who gets in where.

Its ids are its own (ids, emails and device ids are global); its names are its own too, so a
test can tell from any answer whether something of school 2 reached it. Herr Berg is its
admin and belongs to nothing else, so a test may move him to another school.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from edge_ops.importer import import_data

NORD = 2
BERG, QUIST = 201, 202  # admin; supervisor of NORDLAUF
BERG_LOGIN = {"email": "berg@nord.example.org", "password": "berg-demo-201"}
NORDLAUF = 2100  # running in room 21, with reader nord-1
DEVICES = ["nord-1", "nord-2"]


def nord_document() -> dict[str, Any]:
    """School 2's import file."""
    return {
        "school": {"id": NORD, "name": "Schule Nord", "timezone": "Europe/Vienna"},
        "rooms": [{"id": 21, "name": "Raum N1"}, {"id": 22, "name": "Raum N2"}],
        "staff": [
            {
                "id": BERG,
                "name": "Herr Berg",
                "admin": True,
                **BERG_LOGIN,
            },
            {
                "id": QUIST,
                "name": "Frau Quist",
                "email": "quist@nord.example.org",
                "password": "quist-demo-202",
                "tag": "B0A0B0C0D2",
            },
        ],
        "students": [
            {"id": 2001, "first_name": "Nora", "last_name": "Lindqvist", "tag": "B1000001D2"},
            {"id": 2002, "first_name": "Nils", "last_name": "Lindqvist", "tag": "B1000002D2"},
        ],
        "devices": [
            {"id": "nord-1", "room_id": 21, "active": True},
            {"id": "nord-2", "room_id": 22, "active": False},
        ],
        "active_groups": [
            {"id": NORDLAUF, "name": "Nordlauf", "room_id": 21, "supervisor_ids": [QUIST]}
        ],
    }


def import_nord(engine: Engine) -> None:
    import_data(engine, json.dumps(nord_document()).encode())
