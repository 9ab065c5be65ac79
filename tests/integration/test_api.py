"""The REST API of CONTRACT §4 end to end: authorization, validation, visits, activities, roster.

Each test runs against a real `edge-bridge serve`, a real mosquitto and a real database file,
so it covers a whole scenario with several assertions to keep the suite fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlmodel import Session, select

from edge_bridge.models import ActiveGroup, Supervision, Visit
from tests.factories import open_groups
from tests.integration.conftest import System
from tests.support.sse import Frame, SseStream

pytestmark = pytest.mark.integration

T = TypeVar("T")

SCHMIDT, YILMAZ, NOWAK, ADMIN = 1, 2, 3, 4  # supervises 124; supervises 123 + leads 8; leads 7
HOMEWORK, FOOTBALL = 124, 123  # Raum 101 (reader-101), Turnhalle (reader-turnhalle)
MAX, EMMA_SCHULZ = "04A1B20000", "04A1B20001"  # students 401, 402: home group 7
MAX_RICHTER, EMMA_BRAUN = "04A1B2001E", "04A1B2001F"  # students 431, 432: home group 8

# Every route of CONTRACT §4 that needs a staff token, with a request that would be valid.
STAFF_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/me", None),
    ("GET", "/api/active/groups", None),
    ("POST", "/api/active/groups", {"name": "Basteln", "room_id": 3}),
    ("POST", f"/api/active/groups/{HOMEWORK}/end", None),
    ("GET", f"/api/active/groups/{HOMEWORK}/visits/display", None),
    ("POST", f"/api/active/groups/{HOMEWORK}/visits", {"student_id": 401}),
    ("POST", f"/api/active/groups/{HOMEWORK}/visits/401/checkout", None),
    ("GET", "/api/devices", None),
    ("GET", "/api/sse/stats", None),
    ("GET", "/api/ogs-groups/7/students", None),
    ("GET", "/api/sse/events", None),
    ("GET", "/api/rooms", None),
    ("GET", "/api/students?query=max", None),
    ("GET", "/api/students/tags", None),
]
ADMIN_ROUTES = ["/api/devices", "/api/sse/stats", "/api/active/groups?all=1", "/api/students/tags"]
# What a supervisor may do only in their own group (staff 2 supervises 123, not 124).
GROUP_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", f"/api/active/groups/{HOMEWORK}/end", None),
    ("GET", f"/api/active/groups/{HOMEWORK}/visits/display", None),
    ("POST", f"/api/active/groups/{HOMEWORK}/visits", {"student_id": 401}),
    ("POST", f"/api/active/groups/{HOMEWORK}/visits/401/checkout", None),
]


def _eventually(probe: Callable[[], T | None], *, timeout: float = 10.0, what: str) -> T:
    """The first truthy result of `probe`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def _events_until(stream: SseStream, is_marker: Callable[[Frame], bool]) -> list[Frame]:
    """Every event up to and including the first one `is_marker` accepts."""
    frames = [stream.next_event()]
    while not is_marker(frames[-1]):
        frames.append(stream.next_event())
    return frames


def _checkin_of(student_id: str) -> Callable[[Frame], bool]:
    return lambda frame: (
        frame.event == "student_checkin" and frame.json["data"]["student_id"] == student_id
    )


def _call(
    client: httpx.Client,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.request(method, path, json=body, headers=headers)


def test_routes_refuse_missing_tokens_foreign_groups_and_non_admins(system: System) -> None:
    with system.http() as client:
        # Act: no token, a broken token, and a valid token of someone who is not staff.
        anonymous = {path: _call(client, method, path, body) for method, path, body in STAFF_ROUTES}
        broken = _call(client, "GET", "/api/me", headers={"Authorization": "Bearer not-a-jwt"})
        stranger = _call(client, "GET", "/api/me", headers=system.auth(999))
        # Act: a supervisor of 123 on group 124, and non-admins on admin routes.
        foreign = [
            _call(client, method, path, body, headers=system.auth(YILMAZ))
            for method, path, body in GROUP_ROUTES
        ]
        not_admin = {path: client.get(path, headers=system.auth(SCHMIDT)) for path in ADMIN_ROUTES}
        as_admin = {path: client.get(path, headers=system.auth(ADMIN)) for path in ADMIN_ROUTES}
        roster_other_leader = client.get("/api/ogs-groups/7/students", headers=system.auth(YILMAZ))
        roster_supervisor = client.get("/api/ogs-groups/7/students", headers=system.auth(SCHMIDT))
        public = [client.get("/health"), client.get("/ready"), client.get("/")]

    for path, response in anonymous.items():
        assert response.status_code == 401, path
        assert response.json()["detail"] == "Not authenticated", path
    assert broken.status_code == 401
    assert broken.json()["detail"].startswith("Invalid access token")
    assert (stranger.status_code, stranger.json()) == (403, {"detail": "Not a staff member"})
    for response in foreign:
        assert response.status_code == 403, response.request.url
        assert response.json() == {"detail": "You do not supervise this group"}
    for path, response in not_admin.items():
        assert response.status_code == 403, path
        assert "admin" in response.json()["detail"].lower(), path
    for path, response in as_admin.items():
        assert response.status_code == 200, path
    assert sorted(g["id"] for g in as_admin["/api/active/groups?all=1"].json()) == ["123", "124"]
    assert roster_other_leader.status_code == 403
    assert roster_supervisor.status_code == 403
    assert roster_supervisor.json() == {"detail": "You do not lead this home group"}
    assert [response.status_code for response in public] == [200, 200, 200]
    assert open_groups(system.engine, 401) == []  # nothing refused had an effect
    with Session(system.engine) as session:
        assert session.get(ActiveGroup, HOMEWORK).ended_at is None  # type: ignore[union-attr]


def test_unknown_ids_are_404_bad_bodies_are_422_naming_the_field_and_busy_rooms_409(
    system: System,
) -> None:
    admin, schmidt = system.auth(ADMIN), system.auth(SCHMIDT)
    with system.http() as client:
        # Act: unknown ids.
        not_found = [
            client.post("/api/active/groups/9999/end", headers=admin),
            client.get("/api/active/groups/9999/visits/display", headers=schmidt),
            client.post("/api/active/groups/9999/visits", json={"student_id": 401}, headers=admin),
            client.post(f"/api/active/groups/{HOMEWORK}/visits/401/checkout", headers=schmidt),
            client.post(
                f"/api/active/groups/{HOMEWORK}/visits", json={"student_id": 9999}, headers=schmidt
            ),
            client.post("/api/active/groups", json={"name": "Chor", "room_id": 99}, headers=admin),
            client.get("/api/ogs-groups/999/students", headers=admin),
        ]
        # Act: bad bodies, one field at a time.
        start = "/api/active/groups"
        checkin = f"/api/active/groups/{HOMEWORK}/visits"
        invalid = {
            "name": client.post(start, json={"room_id": 3}, headers=schmidt),
            "room_id": client.post(
                start, json={"name": "Chor", "room_id": "drei"}, headers=schmidt
            ),
            "colour": client.post(
                start, json={"name": "Chor", "room_id": 3, "colour": "rot"}, headers=schmidt
            ),
            "name ": client.post(start, json={"name": "   ", "room_id": 3}, headers=schmidt),
            "student_id": client.post(checkin, json={"student_id": []}, headers=schmidt),
            "body": client.post(
                checkin,
                content=b"{not json",
                headers={**schmidt, "Content-Type": "application/json"},
            ),
            "group_id": client.get("/api/active/groups/abc/visits/display", headers=schmidt),
        }
        # Act: conflicts.
        busy_room = client.post(start, json={"name": "Chor", "room_id": 1}, headers=schmidt)
        first = client.post(checkin, json={"student_id": 401}, headers=schmidt)
        again = client.post(checkin, json={"student_id": 401}, headers=schmidt)

    for response in not_found:
        assert response.status_code == 404, (response.request.url, response.text)
        assert isinstance(response.json()["detail"], str)
    for field, response in invalid.items():
        assert response.status_code == 422, (field, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str), detail
        assert field.strip() in detail, detail
    assert "Field required" in invalid["name"].json()["detail"]
    assert "Extra inputs are not permitted" in invalid["colour"].json()["detail"]
    assert invalid["colour"].json()["errors"][0]["loc"] == ["body", "colour"]
    assert busy_room.status_code == 409
    assert "already has an active group" in busy_room.json()["detail"]
    assert (first.status_code, first.json()["result"]) == (201, "checked_in")
    assert again.status_code == 409
    assert "already checked in" in again.json()["detail"]
    assert open_groups(system.engine, 401) == [HOMEWORK]


def test_manual_check_in_transfer_and_check_out_reach_the_streams_as_manual(
    system: System,
) -> None:
    homework = system.connected_stream(SCHMIDT)
    football = system.connected_stream(YILMAZ)  # supervises 123, leads home group 8
    assert system.reader("reader-turnhalle").scan(EMMA_BRAUN)["result"] == "checked_in"
    assert football.next_event().event == "student_checkin"
    group = f"/api/active/groups/{HOMEWORK}"

    with system.http() as client:
        # Act: Emma Braun moves from the Fußball AG to Hausaufgaben by hand; Max is checked in.
        transfer = client.post(
            f"{group}/visits", json={"student_id": 432}, headers=system.auth(SCHMIDT)
        )
        transfer_events = [homework.next_event()]
        football_events = [football.next_event(), football.next_event()]
        checkin = client.post(
            f"{group}/visits", json={"student_id": 401}, headers=system.auth(SCHMIDT)
        )
        checkin_event = homework.next_event()
        display = client.get(f"{group}/visits/display", headers=system.auth(SCHMIDT))
        # Act: Max is checked out by hand, twice.
        checkout = client.post(f"{group}/visits/401/checkout", headers=system.auth(SCHMIDT))
        checkout_event = homework.next_event()
        checkout_again = client.post(f"{group}/visits/401/checkout", headers=system.auth(SCHMIDT))
        display_after = client.get(f"{group}/visits/display", headers=system.auth(SCHMIDT))

    assert transfer.status_code == 201
    assert transfer.json() == {
        "result": "transferred",
        "student_id": "432",
        "active_group_id": "124",
    }
    left, arrived = football_events
    assert (left.event, left.json["active_group_id"]) == ("student_checkout", "123")
    assert left.json["data"]["source"] == "manual"
    assert (arrived.event, arrived.json["active_group_id"]) == ("student_checkin", "124")
    assert arrived.json["data"]["ogs_group_id"] == "8"  # Herr Yilmaz leads Emma's home group
    assert [(e.event, e.json["active_group_id"]) for e in transfer_events] == [
        ("student_checkin", "124")
    ]
    assert transfer_events[0].json["data"]["source"] == "manual"
    assert checkin.json()["result"] == "checked_in"
    assert checkin_event.event == "student_checkin"
    assert checkin_event.json["data"] == {
        "student_id": "401",
        "student_name": "Max Muster",
        "room_id": "1",
        "room_name": "Raum 101",
        "activity_name": "Hausaufgaben",
        "source": "manual",
        "ogs_group_id": "7",
    }
    rows = display.json()
    assert [set(row) for row in rows] == [{"student_id", "student_name", "entry_time"}] * 2
    assert [row["student_name"] for row in rows] == ["Emma Braun", "Max Muster"]  # by last name
    assert all(datetime.fromisoformat(row["entry_time"]).tzinfo for row in rows)
    assert (checkout.status_code, checkout.json()["result"]) == (200, "checked_out")
    assert checkout_event.event == "student_checkout"
    assert checkout_event.json["data"]["source"] == "manual"
    assert checkout_again.status_code == 404
    assert [row["student_id"] for row in display_after.json()] == ["432"]
    assert open_groups(system.engine, 432) == [HOMEWORK]
    assert open_groups(system.engine, 401) == []


def test_starting_an_activity_subscribes_the_open_stream_and_ending_it_checks_out_once(
    system: System,
) -> None:
    nowak = system.connected_stream(NOWAK)  # leads home group 7, supervises nothing yet
    yilmaz = system.connected_stream(YILMAZ)  # leads home group 8
    with system.http() as client:
        # Act: Frau Nowak starts an activity in the Mensa; two children scan in there.
        started = client.post(
            "/api/active/groups", json={"name": "Basteln", "room_id": 3}, headers=system.auth(NOWAK)
        )
        start_event = nowak.next_event()
        busy = client.post(
            "/api/active/groups", json={"name": "Chor", "room_id": 3}, headers=system.auth(SCHMIDT)
        )
        mensa = system.reader("reader-mensa")
        assert mensa.scan(MAX_RICHTER)["result"] == "checked_in"  # home group 8
        assert mensa.scan(MAX)["result"] == "checked_in"  # home group 7: Frau Nowak leads it
        arrivals = _events_until(nowak, _checkin_of("401"))
        group_id = started.json()["id"]
        mine = client.get("/api/active/groups", headers=system.auth(NOWAK)).json()
        # Act: she ends it; markers after it prove that nothing else was sent.
        ended = client.post(f"/api/active/groups/{group_id}/end", headers=system.auth(NOWAK))
        system.reader("reader-101").scan(EMMA_BRAUN)  # home group 8 → marker for Herr Yilmaz
        system.reader("reader-101").scan(EMMA_SCHULZ)  # home group 7 → marker for Frau Nowak
        nowak_after_end = _events_until(nowak, _checkin_of("402"))
        yilmaz_events = _events_until(yilmaz, _checkin_of("432"))
        mine_after = client.get("/api/active/groups", headers=system.auth(NOWAK)).json()

    assert started.status_code == 201
    body = started.json()
    assert (body["name"], body["room_id"], body["room_name"]) == ("Basteln", "3", "Mensa")
    assert (body["supervisor_ids"], body["student_count"]) == (["3"], 0)
    assert (start_event.event, start_event.json["active_group_id"]) == ("activity_start", group_id)
    assert busy.status_code == 409
    # The stream gained the group without reconnecting, and Max came once though both apply.
    assert [(e.event, e.json["data"]["student_id"]) for e in arrivals] == [
        ("student_checkin", "431"),
        ("student_checkin", "401"),
    ]
    assert [(g["id"], g["student_count"]) for g in mine] == [(group_id, 2)]
    assert ended.status_code == 200
    assert ended.json()["student_ids"] == ["401", "431"]
    assert [e.event for e in nowak_after_end].count("activity_end") == 1
    activity_end = next(e for e in nowak_after_end if e.event == "activity_end")
    assert activity_end.json["active_group_id"] == group_id
    assert activity_end.json["data"]["student_ids"] == ["401", "431"]
    automated = [e for e in nowak_after_end if e.event == "student_checkout"]
    assert [(e.json["data"]["student_id"], e.json["data"]["source"]) for e in automated] == [
        ("401", "automated")
    ]
    assert [e.event for e in nowak_after_end] == [
        "student_checkout",
        "activity_end",
        "student_checkin",
    ]
    assert [(e.event, e.json["data"].get("student_id")) for e in yilmaz_events[-2:]] == [
        ("student_checkout", "431"),
        ("student_checkin", "432"),
    ]
    assert yilmaz_events[-2].json["data"]["source"] == "automated"
    assert yilmaz_events[-2].json["data"]["ogs_group_id"] == "8"
    assert "activity_end" not in [e.event for e in yilmaz_events]
    assert mine_after == []
    with Session(system.engine) as session:
        group = session.get(ActiveGroup, int(group_id))
        assert group is not None and group.ended_at is not None
        visits = session.exec(select(Visit).where(Visit.active_group_id == int(group_id))).all()
        supervisions = session.exec(
            select(Supervision).where(Supervision.active_group_id == int(group_id))
        ).all()
    assert len(visits) == 2
    assert {visit.exit_time for visit in visits} == {group.ended_at}  # one transaction
    assert {supervision.ended_at for supervision in supervisions} == {group.ended_at}


def test_me_and_the_home_group_roster_show_where_each_child_is(system: System) -> None:
    system.reader("reader-turnhalle").scan(EMMA_SCHULZ)  # student 402, home group 7
    with system.http() as client:
        # Act
        me = client.get("/api/me", headers=system.auth(NOWAK)).json()
        me_schmidt = client.get("/api/me", headers=system.auth(SCHMIDT)).json()
        roster = client.get("/api/ogs-groups/7/students", headers=system.auth(NOWAK))
        as_admin = client.get("/api/ogs-groups/8/students", headers=system.auth(ADMIN))

    assert me == {
        "id": "3",
        "name": "Frau Nowak",
        "email": "nowak@example.org",
        "admin": False,
        "active_groups": [],
        "ogs_groups": [{"id": "7", "name": "Klasse 2b", "room_id": "1", "room_name": "Raum 101"}],
    }
    assert [(g["id"], g["name"], g["room_name"]) for g in me_schmidt["active_groups"]] == [
        ("124", "Hausaufgaben", "Raum 101")
    ]
    assert me_schmidt["active_groups"][0]["supervisor_ids"] == ["1"]
    assert me_schmidt["ogs_groups"] == []
    assert roster.status_code == 200
    children = {entry["student_id"]: entry for entry in roster.json()}
    assert len(children) == 30
    emma = children["402"]
    assert (emma["status"], emma["active_group_id"], emma["room_name"]) == (
        "present",
        "123",
        "Turnhalle",
    )
    assert datetime.fromisoformat(emma["since"]).tzinfo is not None
    assert children["401"] == {
        "student_id": "401",
        "student_name": "Max Muster",
        "status": "away",
        "active_group_id": None,
        "room_name": None,
        "since": None,
    }
    names = [entry["student_name"].split()[-1] for entry in roster.json()]
    assert names == sorted(names)
    assert as_admin.status_code == 200
    assert len(as_admin.json()) == 30


def test_devices_show_a_reader_online_after_its_status_and_sse_stats_count_streams(
    system: System,
) -> None:
    status_topic = f"{system.settings.mqtt_topic_prefix}/readers/reader-101/status"
    reader = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="reader-101")
    reader.username_pw_set("reader-101", system.passwords["reader-101"])
    reader.connect(system.broker.host, system.broker.port)
    reader.loop_start()
    system.connected_stream(SCHMIDT)
    system.connected_stream(SCHMIDT)
    system.connected_stream(NOWAK)
    try:
        # Act
        payload = json.dumps({"online": True, "firmware": "1.4.2"}).encode()
        reader.publish(status_topic, payload, qos=1, retain=True).wait_for_publish(5)
        with system.http() as client:

            def reader_101() -> dict[str, Any] | None:
                devices = client.get("/api/devices", headers=system.auth(ADMIN)).json()
                found = next(d for d in devices if d["id"] == "reader-101")
                return found if found["online"] else None

            online = _eventually(reader_101, what="reader-101 online in /api/devices")
            devices = client.get("/api/devices", headers=system.auth(ADMIN)).json()
            stats = client.get("/api/sse/stats", headers=system.auth(ADMIN)).json()
    finally:
        reader.publish(status_topic, b"", qos=1, retain=True).wait_for_publish(5)
        reader.disconnect()
        reader.loop_stop()

    assert [d["id"] for d in devices] == [
        "reader-101",
        "reader-mensa",
        "reader-spare",
        "reader-turnhalle",
    ]
    assert (online["room_id"], online["room_name"], online["active"]) == ("1", "Raum 101", True)
    assert online["firmware"] == "1.4.2"
    assert datetime.fromisoformat(online["last_seen"]).tzinfo is not None
    spare = next(d for d in devices if d["id"] == "reader-spare")
    assert (spare["online"], spare["active"]) == (False, False)
    assert stats["total_clients"] == 3
    assert stats["groups"] == {"124": 2}
    assert stats["ogs_groups"] == {"7": 1}


def test_ready_names_mqtt_when_the_broker_is_down(system: System) -> None:
    with system.http() as client:
        before = client.get("/ready")
        # Act
        system.broker.stop()
        down = _eventually(
            lambda: (r := client.get("/ready")).status_code == 503 and r,
            what="/ready answering 503",
        )
        health = client.get("/health")

    assert before.status_code == 200
    tail = {"event_tail": "ok"}  # PostgreSQL adds the event-log tail's check
    assert before.json()["checks"] | tail == {"database": "ok", "mqtt": "ok", **tail}
    assert down.json()["checks"] | tail == {"database": "ok", "mqtt": "disconnected", **tail}
    assert "mqtt" in down.json()["detail"]
    assert health.json() == {"status": "ok"}


# CONTRACT §4: method, path, request body schema (or None), error statuses it documents.
DOCUMENTED: list[tuple[str, str, str | None, set[str]]] = [
    ("get", "/health", None, set()),
    ("get", "/ready", None, {"503"}),
    ("get", "/metrics", None, set()),
    ("post", "/api/auth/login", "LoginIn", {"401", "422"}),
    ("post", "/api/auth/refresh", "RefreshIn", {"401"}),
    ("get", "/api/me", None, {"401", "403"}),
    ("get", "/api/active/groups", None, {"401", "403", "422"}),
    ("post", "/api/active/groups", "ActiveGroupCreate", {"401", "403", "404", "409", "422"}),
    ("post", "/api/active/groups/{group_id}/end", None, {"401", "403", "404", "422"}),
    ("get", "/api/active/groups/{group_id}/visits/display", None, {"401", "403", "404"}),
    ("post", "/api/active/groups/{group_id}/visits", "VisitCreate", {"401", "403", "404", "409"}),
    (
        "post",
        "/api/active/groups/{group_id}/visits/{student_id}/checkout",
        None,
        {"401", "403", "404", "422"},
    ),
    ("get", "/api/devices", None, {"401", "403"}),
    ("get", "/api/sse/stats", None, {"401", "403"}),
    ("get", "/api/ogs-groups/{group_id}/students", None, {"401", "403", "404", "422"}),
    ("get", "/api/sse/events", None, {"400", "401", "403"}),
]


def test_the_openapi_document_lists_every_route_with_its_body_and_errors(system: System) -> None:
    with system.http() as client:
        # Act
        document = client.get("/openapi.json")
        docs = client.get("/docs")

    assert document.status_code == 200
    paths = document.json()["paths"]
    for method, path, body, errors in DOCUMENTED:
        operation = paths.get(path, {}).get(method)
        assert operation is not None, f"{method.upper()} {path} missing"
        assert errors <= set(operation["responses"]), (path, sorted(operation["responses"]))
        if body is None:
            continue
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        refs = [schema.get("$ref", "")] + [item.get("$ref", "") for item in schema.get("anyOf", [])]
        assert any(ref.endswith(f"/{body}") for ref in refs), (path, schema)
    schemas = document.json()["components"]["schemas"]
    assert set(schemas["ActiveGroupCreate"]["required"]) == {"name", "room_id"}
    invalid = paths["/api/active/groups"]["post"]["responses"]["422"]
    assert invalid["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationErrorOut")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in docs.text
