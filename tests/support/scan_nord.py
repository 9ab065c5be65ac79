"""School 2 ("Schule Nord") for the scan-path tests: one reader, tags that collide with A's.

It sits beside the fixture school (school 1, tests/fixtures/school.json) in one database,
with ids of its own (ids are global). `SHARED_TAG` is school 1's Max Muster (401) and
school 2's Lina Berg (501); `SHARED_STAFF_TAG` is school 1's Frau Schmidt (1) and school 2's
Herr Nordmann (21); `NORD_ONLY_TAG` (Ole Strand, 502) is unknown in school 1.
"""

from __future__ import annotations

from typing import Any

NORD_SCHOOL_ID = 2
NORD_READER = "reader-nord-1"  # in room 21, where active group 223 runs
NORD_GROUP = 223
NORD_SUPERVISOR = 22  # supervises 223
NORD_LEADER = 21  # leads home group 27 (Lina and Ole); supervises nothing at the start
SHARED_TAG = "04A1B20000"
SHARED_STAFF_TAG = "A1B2C3D4"
NORD_ONLY_TAG = "04A1B2F00D"


def nord_document() -> dict[str, Any]:
    """A fresh copy of school 2's import file."""
    return {
        "school": {"id": NORD_SCHOOL_ID, "name": "Schule Nord"},
        "rooms": [{"id": 21, "name": "Nordraum"}],
        "staff": [
            {
                "id": NORD_LEADER,
                "name": "Herr Nordmann",
                "email": "nordmann@nord.example.org",
                "password": "nord-demo-21",
                "tag": SHARED_STAFF_TAG,
            },
            {
                "id": NORD_SUPERVISOR,
                "name": "Frau Nordlicht",
                "email": "nordlicht@nord.example.org",
                "password": "nord-demo-22",
            },
        ],
        "ogs_groups": [{"id": 27, "name": "Klasse 1n", "room_id": 21, "leader_ids": [NORD_LEADER]}],
        "students": [
            {
                "id": 501,
                "first_name": "Lina",
                "last_name": "Berg",
                "tag": SHARED_TAG,
                "ogs_group_id": 27,
            },
            {
                "id": 502,
                "first_name": "Ole",
                "last_name": "Strand",
                "tag": NORD_ONLY_TAG,
                "ogs_group_id": 27,
            },
        ],
        "devices": [{"id": NORD_READER, "room_id": 21, "active": True}],
        "active_groups": [
            {"id": NORD_GROUP, "name": "Lesen", "room_id": 21, "supervisor_ids": [NORD_SUPERVISOR]}
        ],
    }
