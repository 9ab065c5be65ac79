"""Schools as tenants on the event stream (issue 13): real uvicorn, mosquitto and database.

Two schools in one database: school 1 is the fixture school (tests/fixtures/school.json), school
2 ("Schule Nord") is built here with names and card numbers that overlap school 1's (its "Max
Muster" has school 1's Max's tag, its "Frau Schmidt" school 1's Frau Schmidt's) and ids of
its own. Only ids tell their events apart, so a leak is looked for by id.

Where a test claims that something does NOT arrive, a school-1 sentinel event follows the
school-2 events: event ids increase in commit order and every stream gets its events in id
order, so a leaked school-2 event would have arrived before the sentinel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.conftest import System
from tests.support.sse import Frame, SseStream

pytestmark = pytest.mark.integration

NORD = 2
SCHMIDT, NOWAK, ADMIN = 1, 3, 4  # school 1: supervises 124; leads home group 7; admin
HAUSAUFGABEN = 124  # school 1's group in room 1 (reader-101)
MAX_TAG = "04A1B20000"  # school 1's Max Muster (401); school 2's Max Muster (2001) too
NORD_SUPERVISOR, NORD_ADMIN, NORD_LEADER = 201, 202, 203
NORD_GROUP, NORD_HOME_GROUP, NORD_ROOM = 2001, 2007, 201
NORD_MAX = 2001
NORD_READER = "reader-nord-1"
WAIT_SECONDS = 10.0


def nord_document() -> dict[str, Any]:
    """School 2's import file: school 1's names and tags again, ids of its own."""
    return {
        "school": {"id": NORD, "name": "Schule Nord"},
        "rooms": [{"id": NORD_ROOM, "name": "Raum 101"}, {"id": 202, "name": "Turnhalle"}],
        "staff": [
            {
                "id": NORD_SUPERVISOR,
                "name": "Frau Schmidt",
                "email": "schmidt@nord.example.org",
                "tag": "A1B2C3D4",  # school 1's Frau Schmidt's card number
            },
            {
                "id": NORD_ADMIN,
                "name": "Admin Büro",
                "email": "admin@nord.example.org",
                "admin": True,
            },
            {"id": NORD_LEADER, "name": "Frau Nowak", "email": "nowak@nord.example.org"},
        ],
        "ogs_groups": [
            {
                "id": NORD_HOME_GROUP,
                "name": "Klasse 2b",
                "room_id": NORD_ROOM,
                "leader_ids": [NORD_LEADER],
            }
        ],
        "students": [
            {
                "id": NORD_MAX,
                "first_name": "Max",
                "last_name": "Muster",
                "tag": MAX_TAG,
                "ogs_group_id": NORD_HOME_GROUP,
            },
            {
                "id": 2002,
                "first_name": "Emma",
                "last_name": "Schulz",
                "tag": "04A1B20001",
                "ogs_group_id": NORD_HOME_GROUP,
            },
        ],
        "devices": [{"id": NORD_READER, "room_id": NORD_ROOM, "active": True}],
        "active_groups": [
            {
                "id": NORD_GROUP,
                "name": "Hausaufgaben",
                "room_id": NORD_ROOM,
                "supervisor_ids": [NORD_SUPERVISOR],
            }
        ],
    }


# Every id and device id school 2 has and school 1 does not: none may appear on a school-1 stream.
NORD_VALUES = frozenset(
    {
        str(NORD_GROUP),
        str(NORD_HOME_GROUP),
        str(NORD_ROOM),
        "202",
        str(NORD_MAX),
        "2002",
        str(NORD_SUPERVISOR),
        str(NORD_ADMIN),
        str(NORD_LEADER),
        NORD_READER,
    }
)


@pytest.fixture
def two_schools(make_system: Callable[..., System]) -> System:
    """A running system on the fixture school (1) and Schule Nord (2), one database."""
    return make_system(documents=[nord_document()])


def values_in(value: object) -> Iterator[str]:
    """Every scalar in a JSON value, as a string (dict keys too: `/api/sse/stats` groups)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from values_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from values_in(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def nord_values_in(frames: list[Frame]) -> set[str]:
    """The school-2 ids found in the frames' envelopes."""
    return {found for frame in frames for found in values_in(frame.json)} & NORD_VALUES


def open_stream(
    system: System, staff_id: int, *, school_id: int = 1, last_event_id: str | None = None
) -> tuple[SseStream, Frame]:
    """A stream of that staff member (token of their school) and its `connected` frame."""
    token = system.token(staff_id, school_id=school_id)
    headers = None if last_event_id is None else {"Last-Event-ID": last_event_id}
    stream = system.stream(token=token, headers=headers)
    assert stream.status_code == 200, stream.body
    connected = stream.next_event()
    assert connected.event == "connected" and connected.id is not None
    return stream, connected


def events_until(stream: SseStream, done: Callable[[Frame], bool]) -> list[Frame]:
    """Every event frame up to and including the first one `done` accepts (bounded)."""
    frames: list[Frame] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while not frames or not done(frames[-1]):
        frames.append(stream.next_event(timeout=max(0.01, deadline - time.monotonic())))
    return frames


def occupancy_of(room_id: int, count: int) -> Callable[[Frame], bool]:
    """Accepts the `occupancy` frame that shows `count` children in that room."""

    def accepts(frame: Frame) -> bool:
        if frame.event != "occupancy":
            return False
        rooms = {room["room_id"]: room["student_count"] for room in frame.json["data"]["rooms"]}
        return rooms.get(str(room_id)) == count

    return accepts


def device_status_of(device_id: str) -> Callable[[Frame], bool]:
    """Accepts the `device_status` frame of that reader."""
    return lambda frame: (
        frame.event == "device_status" and frame.json["data"]["device_id"] == device_id
    )


def set_online(system: System, device_id: str) -> None:
    """The reader publishes its retained `online` status (→ `device_status` for admins)."""
    reader = system.reader(device_id)
    topic = f"{system.settings.mqtt_topic_prefix}/readers/{device_id}/status"
    reader.client.publish(topic, b'{"online": true}', qos=1, retain=True).wait_for_publish(5)


def nord_checkin(system: System) -> dict[str, Any]:
    """School 2's reader scans school 2's Max (whose tag is school 1's Max's too)."""
    set_online(system, NORD_READER)
    return system.reader(NORD_READER).scan(MAX_TAG)


def school_one_checkin(system: System) -> dict[str, Any]:
    """The school-1 sentinel: school 1's Max checks in at reader-101 (group 124, room 1)."""
    return system.reader("reader-101").scan(MAX_TAG)


def sse_stats(system: System, staff_id: int, *, school_id: int) -> dict[str, Any]:
    with system.http() as http:
        response = http.get(
            "/api/sse/stats", headers=system.auth(staff_id, admin=True, school_id=school_id)
        )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_school_two_readers_checkins_reach_school_two_streams_and_no_school_one_stream(
    two_schools: System,
) -> None:
    system = two_schools
    supervisor, _ = open_stream(system, SCHMIDT)
    leader, _ = open_stream(system, NOWAK)
    admin, _ = open_stream(system, ADMIN)
    nord_supervisor, nord_connected = open_stream(system, NORD_SUPERVISOR, school_id=NORD)
    nord_leader, _ = open_stream(system, NORD_LEADER, school_id=NORD)
    nord_admin, _ = open_stream(system, NORD_ADMIN, school_id=NORD)

    nord_feedback = nord_checkin(system)
    nord_checkin_frame = nord_supervisor.next_event()
    nord_leader_frame = nord_leader.next_event()
    nord_office = events_until(nord_admin, occupancy_of(NORD_ROOM, 1))
    sentinel_feedback = school_one_checkin(system)
    supervisor_frame = supervisor.next_event()
    leader_frame = leader.next_event()
    office = events_until(admin, occupancy_of(1, 1))

    assert nord_connected.json["subscribed_groups"] == [str(NORD_GROUP)]
    assert nord_feedback["result"] == "checked_in"
    assert sentinel_feedback["result"] == "checked_in"
    assert (nord_checkin_frame.event, nord_checkin_frame.json["active_group_id"]) == (
        "student_checkin",
        str(NORD_GROUP),
    )
    assert nord_checkin_frame.json["data"]["student_id"] == str(NORD_MAX)
    assert nord_leader_frame.json["data"]["ogs_group_id"] == str(NORD_HOME_GROUP)
    assert [frame.event for frame in nord_office] == ["device_status", "occupancy"]
    assert nord_office[0].json["data"]["device_id"] == NORD_READER
    # School 1's streams: their first event is school 1's own, nothing of school 2 before it.
    assert supervisor_frame.json["active_group_id"] == str(HAUSAUFGABEN)
    assert supervisor_frame.json["data"]["student_id"] == "401"
    assert leader_frame.json["data"]["student_id"] == "401"
    assert [frame.event for frame in office] == ["occupancy"]
    assert nord_values_in([supervisor_frame, leader_frame, *office]) == set()
    assert int(nord_checkin_frame.id or 0) < int(supervisor_frame.id or 0)  # school 2's first


def test_a_last_event_id_replay_on_a_school_one_admin_stream_holds_no_school_two_event(
    two_schools: System,
) -> None:
    system = two_schools
    _, admin_connected = open_stream(system, ADMIN)
    nord_admin, nord_admin_connected = open_stream(system, NORD_ADMIN, school_id=NORD)
    school_one_checkin(system)
    assert nord_checkin(system)["result"] == "checked_in"
    events_until(nord_admin, occupancy_of(NORD_ROOM, 1))  # school 2's events are out
    set_online(system, "reader-turnhalle")  # a school-1 admins' event after school 2's

    replay, _ = open_stream(system, ADMIN, last_event_id=admin_connected.id)
    replayed = events_until(replay, device_status_of("reader-turnhalle"))
    nord_replay, _ = open_stream(
        system, NORD_ADMIN, school_id=NORD, last_event_id=nord_admin_connected.id
    )
    nord_replayed = events_until(nord_replay, occupancy_of(NORD_ROOM, 1))

    assert occupancy_of(1, 1)(replayed[0])  # school 1's own events replay
    assert nord_values_in(replayed) == set()
    # The same stretch replayed to school 2's admin has school 2's events, ids inside it.
    assert [frame.event for frame in nord_replayed] == ["device_status", "occupancy"]
    assert int(nord_replayed[-1].id or 0) < int(replayed[-1].id or 0)


def test_a_replay_from_the_log_after_a_restart_holds_no_school_two_event(
    two_schools: System,
) -> None:
    system = two_schools
    _, admin_connected = open_stream(system, ADMIN)
    supervisor, supervisor_connected = open_stream(system, SCHMIDT)
    assert nord_checkin(system)["result"] == "checked_in"
    school_one_checkin(system)
    assert supervisor.next_event().json["data"]["student_id"] == "401"
    system.close()  # the streams and readers of before the restart
    system.server.stop()
    system.server.start(wait_ready=True)  # the hub's ring is empty: replay reads the log

    replay, _ = open_stream(system, ADMIN, last_event_id=admin_connected.id)
    replayed = events_until(replay, occupancy_of(1, 1))
    supervisor_replay, _ = open_stream(system, SCHMIDT, last_event_id=supervisor_connected.id)
    supervisor_replayed = supervisor_replay.next_event()
    nord_replay, _ = open_stream(
        system, NORD_ADMIN, school_id=NORD, last_event_id=admin_connected.id
    )
    nord_replayed = events_until(nord_replay, occupancy_of(NORD_ROOM, 1))

    assert [frame.event for frame in replayed] == ["occupancy"]
    assert nord_values_in(replayed) == set()
    assert supervisor_replayed.json["data"]["student_id"] == "401"
    assert nord_values_in([supervisor_replayed]) == set()
    assert [frame.event for frame in nord_replayed] == ["device_status", "occupancy"]


def test_sse_stats_of_a_school_one_admin_count_no_school_two_stream(two_schools: System) -> None:
    system = two_schools
    open_stream(system, SCHMIDT)
    open_stream(system, ADMIN)
    open_stream(system, NORD_SUPERVISOR, school_id=NORD)
    open_stream(system, NORD_LEADER, school_id=NORD)
    open_stream(system, NORD_ADMIN, school_id=NORD)

    school_one = sse_stats(system, ADMIN, school_id=1)
    school_two = sse_stats(system, NORD_ADMIN, school_id=NORD)

    assert school_one["total_clients"] == 2
    assert school_one["groups"] == {str(HAUSAUFGABEN): 1}
    assert set(values_in(school_one)) & NORD_VALUES == set()
    assert school_two["total_clients"] == 3
    assert school_two["groups"] == {str(NORD_GROUP): 1}
    assert school_two["ogs_groups"] == {str(NORD_HOME_GROUP): 1}
