"""Home groups (issue 8): leaders follow their children live, across rooms and reconnects."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from edge_ops.importer import import_data
from tests.factories import school_document
from tests.integration.conftest import System

pytestmark = pytest.mark.integration

MAX = "04A1B20000"  # student 401, home group 7 (led by Frau Nowak, staff 3)
EMIL = "04A1B2001E"  # student 431, home group 8 (led by Herr Yilmaz, staff 2)


def _roster(system: System, group_id: int, staff_id: int) -> dict[str, dict[str, str]]:
    with system.http() as client:
        response = client.get(f"/api/ogs-groups/{group_id}/students", headers=system.auth(staff_id))
    assert response.status_code == 200, response.text
    return {entry["student_id"]: entry for entry in response.json()}


def test_a_leader_follows_a_child_into_another_supervisors_room_and_home_again(
    system: System,
) -> None:
    leader = system.stream(3)
    assert leader.next_event().json["ogs_groups"] == ["7"]
    reader = system.reader("reader-turnhalle")  # group 123, supervised by staff 2 only

    reader.scan(MAX)
    checkin = leader.next_event()
    present = _roster(system, 7, 3)["401"]
    reader.scan(MAX, ts=datetime.now(UTC) + timedelta(seconds=4))
    checkout = leader.next_event()
    away = _roster(system, 7, 3)["401"]

    assert (checkin.event, checkin.json["data"]["ogs_group_id"]) == ("student_checkin", "7")
    assert checkin.json["active_group_id"] == "123"
    assert (present["status"], present["room_name"], present["active_group_id"]) == (
        "present",
        "Turnhalle",
        "123",
    )
    assert present["since"]
    assert checkout.event == "student_checkout"
    assert away["status"] == "away" and away.get("room_name") is None

    missed_from = checkin.id
    leader.close()
    replay = system.connected_stream(3, last_event_id=str(missed_from))
    replayed = replay.next_event()
    assert (replayed.event, replayed.id) == ("student_checkout", checkout.id)


def test_a_leadership_change_by_reimport_is_followed_by_open_streams(system: System) -> None:
    stream = system.stream(1)  # Frau Schmidt leads no home group at first
    assert stream.next_event().json["ogs_groups"] == []
    document = school_document()
    document["ogs_groups"][1]["leader_ids"] = [2, 1]  # now she co-leads Klasse 3a (group 8)

    import_data(system.engine, json.dumps(document))  # as `edge-bridge import` would
    deadline = time.monotonic() + 15
    got = None
    while got is None and time.monotonic() < deadline:  # the bridge re-reads groups every 5 s
        system.reader("reader-turnhalle").scan(EMIL, ts=datetime.now(UTC))
        try:
            got = stream.next_event(timeout=3)
        except TimeoutError:
            continue

    assert got is not None, "the open stream never gained the new home group"
    assert got.json["data"]["ogs_group_id"] == "8"
    assert got.json["data"]["student_id"] == "431"


def test_the_roster_is_for_leaders_and_admins_only(system: System) -> None:
    with system.http() as client:
        other = client.get("/api/ogs-groups/7/students", headers=system.auth(1))
        admin = client.get("/api/ogs-groups/7/students", headers=system.auth(4, admin=True))

    assert other.status_code == 403
    assert admin.status_code == 200
    assert len(admin.json()) == 30
