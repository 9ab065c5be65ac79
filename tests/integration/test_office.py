"""The office view's API end to end: attendance (JSON and CSV), occupancy, reader health.

The attendance record of a simulated afternoon is compared with the simulator's own model:
every child's rooms in order, with the read times of the scans that opened and closed them.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session

from edge_bridge.models import Student
from edge_bridge.schoolday import local_day
from simulator.afternoon import Afternoon, RunOptions
from simulator.broker import BrokerConfig
from simulator.data import data_from_import
from simulator.reader import ReaderOptions
from simulator.scenario import PlanOptions, build_plan
from tests.factories import school_document
from tests.integration.conftest import System

pytestmark = pytest.mark.integration

SCHMIDT, YILMAZ, ADMIN = 1, 2, 4
HOMEWORK, FOOTBALL = 124, 123
BERLIN = ZoneInfo("Europe/Berlin")
OFFICE_ROUTES = [
    "/api/attendance",
    "/api/attendance?format=csv",
    "/api/occupancy",
    "/api/devices",
    "/api/ogs-groups",
]


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def _close(a: datetime | None, b: datetime | None) -> bool:
    """Equal to the millisecond the wire format keeps (or both None)."""
    if a is None or b is None:
        return a is b
    return abs(a - b) <= timedelta(milliseconds=1)


def test_a_simulated_afternoon_gives_the_attendance_record_of_the_simulators_model(
    system: System,
) -> None:
    data = data_from_import(school_document())
    plan = build_plan(data, PlanOptions(devices=4, students=60, duration_seconds=30, seed=11))
    broker = BrokerConfig.from_url(
        system.broker.url("unused", "unused"),
        prefix=system.settings.mqtt_topic_prefix,
        credentials=system.passwords,
    )
    reader = ReaderOptions(resend_after_seconds=1.0, max_resends=15)
    afternoon = Afternoon(plan, broker, options=RunOptions(speed=10.0, reader=reader))

    report = afternoon.run()
    assert report.ok, report.mismatches
    assert afternoon.ts_origin is not None
    origin = afternoon.ts_origin
    day = local_day(origin, BERLIN)
    with system.http() as http:
        answer = http.get(f"/api/attendance?date={day}", headers=system.auth(ADMIN))
        devices = http.get("/api/devices", headers=system.auth(ADMIN)).json()

    assert answer.status_code == 200, answer.text
    records = {record["student_id"]: record for record in answer.json()}
    expected = {student: stays for student, stays in plan.stays.items() if stays}
    assert set(records) == set(expected)
    for student, stays in expected.items():
        record = records[student]
        assert [s["room_id"] for s in record["stays"]] == [m.room_id for m in stays], student
        for got, want in zip(record["stays"], stays, strict=True):
            assert _close(
                _parse(got["entry_time"]), origin + timedelta(seconds=want.entered_at_seconds)
            )
            left = want.left_at_seconds
            assert _close(
                _parse(got["exit_time"]), None if left is None else origin + timedelta(seconds=left)
            )
        assert record["present"] == (stays[-1].left_at_seconds is None)
        assert record["arrival"] == record["stays"][0]["entry_time"]
        assert record["checked_in_by"]["source"] == "rfid"
    assert sum(device["scans_today"] for device in devices) == report.sent
    assert all(device["last_scan"] for device in devices if device["scans_today"])


def test_the_csv_export_round_trips_names_with_separators_quotes_newlines_and_umlauts(
    system: System,
) -> None:
    names = {401: ("Jörg; der", 'Große "Zweite"'), 402: ("Zoë\nMarie", "Müller, Ä")}
    with Session(system.engine) as session:
        for student_id, (first, last) in names.items():
            student = session.get(Student, student_id)
            assert student is not None
            student.first_name, student.last_name = first, last
            session.add(student)
        session.commit()
    with system.http() as http:
        for student_id in names:
            answer = http.post(
                f"/api/active/groups/{HOMEWORK}/visits",
                json={"student_id": student_id},
                headers=system.auth(SCHMIDT),
            )
            assert answer.status_code == 201, answer.text

        by_param = http.get("/api/attendance?format=csv", headers=system.auth(ADMIN))
        by_accept = http.get(
            "/api/attendance", headers={**system.auth(ADMIN), "Accept": "text/csv"}
        )

    assert by_param.status_code == 200
    assert by_param.headers["content-type"].startswith("text/csv")
    assert "attachment" in by_param.headers["content-disposition"]
    assert by_param.content.startswith("\ufeff".encode())
    assert by_accept.content == by_param.content
    rows = list(csv.reader(io.StringIO(by_param.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:3] == ["Datum", "Kind", "OGS-Gruppe"]
    assert sorted(row[1] for row in rows[1:]) == sorted(f"{f} {last}" for f, last in names.values())
    assert all(row[5] == "Frau Schmidt" and row[7] == "anwesend" for row in rows[1:])


def test_a_day_without_data_is_empty_and_a_bad_date_names_the_field(system: System) -> None:
    with system.http() as http:
        empty = http.get("/api/attendance?date=2020-01-01", headers=system.auth(ADMIN))
        empty_csv = http.get(
            "/api/attendance?date=2020-01-01&format=csv", headers=system.auth(ADMIN)
        )
        bad = http.get("/api/attendance?date=2026-02-30", headers=system.auth(ADMIN))
        bad_occupancy = http.get("/api/occupancy?date=yesterday", headers=system.auth(ADMIN))

    assert (empty.status_code, empty.json()) == (200, [])
    assert empty_csv.content.decode("utf-8-sig").count("\n") == 1  # the header only
    assert bad.status_code == 422
    assert "date" in bad.json()["detail"]
    assert bad_occupancy.status_code == 422 and "date" in bad_occupancy.json()["detail"]


@pytest.mark.parametrize("path", OFFICE_ROUTES)
def test_a_supervisor_who_is_not_an_admin_gets_403_on_every_office_route(
    system: System, path: str
) -> None:
    with system.http() as http:
        answer = http.get(path, headers=system.auth(SCHMIDT))

    assert answer.status_code == 403
    assert "detail" in answer.json()


def test_occupancy_now_agrees_with_the_rooms_children_counts(system: System) -> None:
    with system.http() as http:
        for student_id, group in [(401, HOMEWORK), (402, HOMEWORK), (431, FOOTBALL)]:
            supervisor = SCHMIDT if group == HOMEWORK else YILMAZ
            answer = http.post(
                f"/api/active/groups/{group}/visits",
                json={"student_id": student_id},
                headers=system.auth(supervisor),
            )
            assert answer.status_code == 201, answer.text
        http.post(
            f"/api/active/groups/{HOMEWORK}/visits/402/checkout", headers=system.auth(SCHMIDT)
        )

        occupancy = http.get("/api/occupancy", headers=system.auth(ADMIN)).json()
        rooms = http.get("/api/rooms", headers=system.auth(SCHMIDT)).json()

    counts = {room["id"]: room["student_count"] for room in rooms}
    assert counts == {"1": 1, "2": 1, "3": 0}
    assert {room["room_id"]: room["present"] for room in occupancy["rooms"]} == counts
    curve = next(room for room in occupancy["rooms"] if room["room_id"] == "1")["points"]
    assert [point["count"] for point in curve][-1] == 1
    assert max(point["count"] for point in curve) == 2


def test_the_admins_stream_gets_reader_and_occupancy_events_and_a_supervisors_does_not(
    system: System,
) -> None:
    admin = system.connected_stream(ADMIN)
    supervisor = system.connected_stream(SCHMIDT)
    reader = system.reader("reader-101")
    status_topic = f"{system.settings.mqtt_topic_prefix}/readers/reader-101/status"

    reader.client.publish(status_topic, b'{"online": true, "firmware": "1.2"}', qos=1, retain=True)
    assert reader.scan("04A1B20000")["result"] == "checked_in"  # Max, into Raum 101

    admin_events = [admin.next_event() for _ in range(2)]
    assert [frame.event for frame in admin_events] == ["device_status", "occupancy"]
    status, occupancy = (frame.json["data"] for frame in admin_events)
    assert (status["device_id"], status["online"], status["room_name"]) == (
        "reader-101",
        True,
        "Raum 101",
    )
    assert occupancy["rooms"] == [{"room_id": "1", "room_name": "Raum 101", "student_count": 1}]
    # The supervisor's next event is the check-in itself: no office events before or after it.
    assert supervisor.next_event().event == "student_checkin"
    with system.http() as http:
        http.post(
            f"/api/active/groups/{HOMEWORK}/visits/401/checkout", headers=system.auth(SCHMIDT)
        )
    assert supervisor.next_event().event == "student_checkout"
    assert admin.next_event().event == "occupancy"
