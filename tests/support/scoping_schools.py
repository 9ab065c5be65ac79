"""The second school of the route-scoping tests, "Schule Nord" (school 2), to import beside
the fixture school (school 1).

Its names mirror the fixture school's (rooms "Raum 101"/"Turnhalle"/"Mensa", "Frau Schmidt",
"Max Muster", home groups "Klasse 2b"/"3a", activities "Fußball AG"/"Hausaufgaben") and its
tags reuse the fixture school's values, so only the school tells the records apart. Ids are
global, so its ids are its own; so are emails and device ids.

    fixture school (1)                     Schule Nord (2)
    rooms 1, 2, 3                          rooms 4, 5, 6
    staff 1-3 (2 leads 8, 3 leads 7), 4    staff 5-7 (6 leads 10, 7 leads 9), 8 (admin)
    home groups 7, 8                       home groups 9, 10
    students 401-460                       students 461-463 (group 9), 464-466 (group 10)
    groups 123 (room 2, staff 2),          groups 125 (room 5, staff 6),
           124 (room 1, staff 1)                  126 (room 4, staff 5)
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from edge_ops.importer import import_data

NORD = 2
NORD_SCHMIDT, NORD_YILMAZ, NORD_NOWAK, NORD_ADMIN = 5, 6, 7, 8
NORD_FOOTBALL, NORD_HOMEWORK = 125, 126
NORD_ROOMS = [4, 5, 6]
NORD_HOME_GROUPS = [9, 10]
NORD_STUDENTS = [461, 462, 463, 464, 465, 466]
NORD_MAX = 461  # "Max Muster", tag 04A1B20000 as student 401 of school 1

_CHILDREN = [  # (id, first, last, tag, home group): school 1's 401-403 and 431-433 again
    (461, "Max", "Muster", "04A1B20000", 9),
    (462, "Emma", "Schulz", "04A1B20001", 9),
    (463, "Leon", "Neumann", "04A1B20002", 9),
    (464, "Max", "Richter", "04A1B2001E", 10),
    (465, "Emma", "Braun", "04A1B2001F", 10),
    (466, "Leon", "Meyer", "04A1B20020", 10),
]


def nord_document() -> dict[str, Any]:
    """School 2's import file (no passwords: tests sign in with issued tokens)."""
    staff = [
        (5, "Frau Schmidt", "schmidt@nord.example.org", "A1B2C3D4"),
        (6, "Herr Yilmaz", "yilmaz@nord.example.org", "A1B2C3D5"),
        (7, "Frau Nowak", "nowak@nord.example.org", "A1B2C3D6"),
    ]
    return {
        "school": {"id": NORD, "name": "Schule Nord"},
        "rooms": [
            {"id": 4, "name": "Raum 101"},
            {"id": 5, "name": "Turnhalle"},
            {"id": 6, "name": "Mensa"},
        ],
        "staff": [
            *({"id": i, "name": n, "email": e, "tag": t} for i, n, e, t in staff),
            {"id": 8, "name": "Admin Büro", "email": "admin@nord.example.org", "admin": True},
        ],
        "ogs_groups": [
            {"id": 9, "name": "Klasse 2b", "room_id": 4, "leader_ids": [7]},
            {"id": 10, "name": "Klasse 3a", "room_id": 6, "leader_ids": [6]},
        ],
        "students": [
            {"id": i, "first_name": f, "last_name": la, "tag": t, "ogs_group_id": g}
            for i, f, la, t, g in _CHILDREN
        ],
        "devices": [
            {"id": "nord-101", "room_id": 4, "active": True},
            {"id": "nord-turnhalle", "room_id": 5, "active": True},
        ],
        "active_groups": [
            {"id": 125, "name": "Fußball AG", "room_id": 5, "supervisor_ids": [6]},
            {"id": 126, "name": "Hausaufgaben", "room_id": 4, "supervisor_ids": [5]},
        ],
    }


def import_nord(engine: Engine) -> None:
    """Import Schule Nord into a database that holds the fixture school."""
    import_data(engine, json.dumps(nord_document()))
