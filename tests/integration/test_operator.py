"""The operator (`superadmin`) end to end: `GET /api/schools` lists every school's health as
counts with no child's or staff member's name, only an operator token gets it, and an
operator token gets nothing else: every staff route and the event stream answer 403 JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import update

from edge_bridge.db import transaction
from edge_bridge.models import Device
from edge_bridge.tokens import issue_operator_token, issue_token
from tests.factories import school_document
from tests.integration.conftest import System
from tests.support.nord import BERG, NORD, QUIST, import_nord, nord_document

pytestmark = pytest.mark.integration

SCHMIDT, SCHOOL_ADMIN = 1, 4
MAX_TAG = "04A1B20000"  # student 401, of home group 7
FIELDS = {
    "id",
    "name",
    "timezone",
    "rooms",
    "students",
    "staff",
    "devices",
    "devices_online",
    "open_visits",
    "streams",
    "last_scan_at",
}


@pytest.fixture
def nord_system(school_engine: Engine, make_system: Callable[..., System]) -> System:
    """The fixture school and Schule Nord in one bridge; one fixture reader shown online."""
    import_nord(school_engine)
    with transaction(school_engine) as session:
        session.exec(update(Device).where(Device.id == "reader-mensa").values(online=True))  # type: ignore[call-overload]
    return make_system()


def _operator(system: System, *, ttl: float = 300) -> dict[str, str]:
    token = issue_operator_token(secret=system.settings.jwt_secret, ttl_seconds=ttl)
    return {"Authorization": f"Bearer {token}"}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _record_strings() -> set[str]:
    """Every name, email, tag, device id and password of both schools' records."""
    documents = [school_document(), nord_document()]
    strings = {text for document in documents for text in _strings(document) if text}
    for document in documents:  # display names too ("Max Muster")
        strings |= {f"{s['first_name']} {s['last_name']}" for s in document["students"]}
    return strings - set(_strings(nord_document()["school"]))


def _schools_once(system: System, expected: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """`GET /api/schools` once it shows `expected` (the fields given per school id), bounded:
    the stream count follows a stream's opening, the scan's effects its commit."""
    deadline = time.monotonic() + 10
    while True:
        answer = system.http().get("/api/schools", headers=_operator(system))
        assert answer.status_code == 200, answer.text
        body: list[dict[str, Any]] = answer.json()
        shown = {row["id"]: {key: row[key] for key in expected.get(row["id"], {})} for row in body}
        if shown == expected or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_the_operator_sees_every_school_with_its_counts_and_no_names(nord_system: System) -> None:
    system = nord_system
    school_one = system.connected_stream(SCHMIDT)
    school_two = system.stream(token=system.token(QUIST, school_id=NORD))
    assert school_two.next_event().event == "connected"
    feedback = system.reader("reader-101").scan(MAX_TAG)  # Max into Hausaufgaben (school 1)
    expected = {
        "1": {"open_visits": 1, "streams": 1},
        "2": {"open_visits": 0, "streams": 1},
    }

    body = _schools_once(system, expected)
    text = json.dumps(body)

    assert feedback["result"] == "checked_in", feedback
    assert [row["id"] for row in body] == ["1", "2"]
    assert all(set(row) == FIELDS for row in body)
    one, two = body
    last_scan = one.pop("last_scan_at")
    assert one == {
        "id": "1",
        "name": "Schule",
        "timezone": None,
        "rooms": 3,
        "students": 60,
        "staff": 4,
        "devices": 4,
        "devices_online": 1,
        "open_visits": 1,
        "streams": 1,
    }
    assert isinstance(last_scan, str) and last_scan.endswith("Z")
    assert two == {
        "id": "2",
        "name": "Schule Nord",
        "timezone": "Europe/Vienna",
        "rooms": 2,
        "students": 2,
        "staff": 2,
        "devices": 2,
        "devices_online": 0,
        "open_visits": 0,
        "streams": 1,
        "last_scan_at": None,  # school 1's scan is not school 2's
    }
    assert [name for name in _record_strings() if name in text] == []
    assert school_one.status_code == 200


def test_only_an_operator_token_gets_the_school_list(nord_system: System) -> None:
    system = nord_system
    secret = system.settings.jwt_secret
    http = system.http()
    refresh = issue_token(SCHMIDT, school_id=1, secret=secret, ttl_seconds=60, token_type="refresh")

    answers = {
        "staff": http.get("/api/schools", headers=system.auth(SCHMIDT)),
        "admin": http.get("/api/schools", headers=system.auth(SCHOOL_ADMIN, admin=True)),
        "school 2 admin": http.get("/api/schools", headers=system.auth(BERG, school_id=NORD)),
        "no token": http.get("/api/schools"),
        "refresh token": http.get("/api/schools", headers={"Authorization": f"Bearer {refresh}"}),
        "expired operator": http.get("/api/schools", headers=_operator(system, ttl=-10)),
        "operator": http.get("/api/schools", headers=_operator(system)),
    }
    log = system.server.log_text()

    assert {name: answer.status_code for name, answer in answers.items()} == {
        "staff": 403,
        "admin": 403,
        "school 2 admin": 403,
        "no token": 401,
        "refresh token": 401,
        "expired operator": 401,
        "operator": 200,
    }
    assert answers["admin"].json() == {"detail": "Operator only"}
    assert f"Auth refused reason=not_operator staff_id={SCHOOL_ADMIN} " in log


STAFF_ROUTES = [
    ("GET", "/api/me", None),
    ("GET", "/api/active/groups", None),
    ("POST", "/api/active/groups", {"name": "Schach AG", "room_id": 3}),
    ("GET", "/api/active/groups/124/visits/display", None),
    ("POST", "/api/active/groups/124/visits", {"student_id": 401}),
    ("GET", "/api/devices", None),
    ("GET", "/api/rooms", None),
    ("GET", "/api/ogs-groups/7/students", None),
    ("GET", "/api/attendance", None),
    ("GET", "/api/sse/stats", None),
]


def _stream_refusal(http: httpx.Client, headers: dict[str, str]) -> tuple[int, str, Any]:
    """Status, content type and body of a stream request that must not stream."""
    with http.stream("GET", "/api/sse/events", headers=headers) as response:
        if response.status_code == 200:
            return 200, response.headers.get("content-type", ""), None
        response.read()
        return response.status_code, response.headers.get("content-type", ""), response.json()


def test_an_operator_token_is_refused_by_the_staff_routes_and_the_stream(
    nord_system: System,
) -> None:
    system = nord_system
    http = system.http()
    operator = _operator(system)

    answers = {
        f"{method} {path}": http.request(method, path, headers=operator, json=body)
        for method, path, body in STAFF_ROUTES
    }
    stream = _stream_refusal(http, operator)
    by_query = http.get(
        "/api/sse/events", params={"token": operator["Authorization"].removeprefix("Bearer ")}
    )
    still_staff = http.get("/api/me", headers=system.auth(SCHMIDT))
    log = system.server.log_text()

    assert {route: answer.status_code for route, answer in answers.items()} == {
        route: 403 for route in answers
    }
    assert {answer.json()["detail"] for answer in answers.values()} == {
        "Operator tokens see no school"
    }
    assert stream == (403, "application/json", {"detail": "Operator tokens see no school"})
    assert by_query.status_code == 403
    assert still_staff.status_code == 200  # the routes work, for staff
    assert "Auth refused reason=operator_token path=/api/sse/events " in log
    assert operator["Authorization"].removeprefix("Bearer ") not in log
