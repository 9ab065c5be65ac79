"""The staff-facing REST routes are scoped to the token's school (issue 13), end to end.

Two schools in one database: the fixture school (1) and "Schule Nord" (2,
tests/support/scoping_schools.py), whose names and tag values repeat school 1's. Staff of
one school asking for an id of the other get the 404 a missing id gets, word for word, and
nothing changes; every list holds only the caller's school; and random (caller, route, id)
picks across both schools answer 404 exactly when the id is not the caller's school's.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from edge_bridge.models import ActiveGroup, Staff, Student, Supervision, Visit
from tests.integration.conftest import System
from tests.support import scoping_schools as nord

pytestmark = pytest.mark.integration

SCHMIDT, YILMAZ, NOWAK, ADMIN = 1, 2, 3, 4  # school 1: supervises 124; 123; leads 7; admin
FOOTBALL, HOMEWORK = 123, 124
MAX = 401  # school 1's Max Muster (home group 7); school 2's is nord.NORD_MAX
SCHOOL_1_STUDENTS = set(range(401, 461))
Body = Callable[[int], dict[str, Any]] | None


@dataclass(frozen=True)
class Caller:
    staff_id: int
    school_id: int

    def __str__(self) -> str:
        return f"staff {self.staff_id} of school {self.school_id}"


S1_SCHMIDT, S1_NOWAK, S1_ADMIN = Caller(SCHMIDT, 1), Caller(NOWAK, 1), Caller(ADMIN, 1)
S2_SCHMIDT, S2_YILMAZ = Caller(nord.NORD_SCHMIDT, 2), Caller(nord.NORD_YILMAZ, 2)
S2_NOWAK, S2_ADMIN = Caller(nord.NORD_NOWAK, 2), Caller(nord.NORD_ADMIN, 2)


@pytest.fixture
def two_schools(school_engine: Engine, make_system: Callable[..., System]) -> System:
    """A running bridge on a database with both schools (imported before it starts)."""
    nord.import_nord(school_engine)
    return make_system()


@dataclass(frozen=True)
class Api:
    """Requests to the running bridge as one staff member or another."""

    system: System
    client: httpx.Client

    def call(
        self, caller: Caller, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = self.system.auth(caller.staff_id, school_id=caller.school_id)
        return self.client.request(method, path, json=body, headers=headers)

    def get(self, caller: Caller, path: str) -> Any:
        response = self.call(caller, "GET", path)
        assert response.status_code == 200, (str(caller), path, response.text)
        return response.json()


def _afternoon(engine: Engine) -> list[tuple[Any, ...]]:
    """Every active group, supervision and visit row: what a refused request must not touch."""
    with Session(engine) as session:
        rows: list[tuple[Any, ...]] = []
        for model in (ActiveGroup, Supervision, Visit):
            rows += [tuple(row.model_dump().items()) for row in session.exec(select(model))]
    return rows


@dataclass(frozen=True)
class Probe:
    """A request naming an id (`{id}` in the path, or in the body), made by `caller` once
    with `foreign` (the other school's id) and once with `missing` (no such record)."""

    caller: Caller
    method: str
    path: str
    foreign: int
    missing: int
    body: Body = None

    def send(self, api: Api, record_id: int) -> httpx.Response:
        body = None if self.body is None else self.body(record_id)
        return api.call(self.caller, self.method, self.path.format(id=record_id), body)


def _student(record_id: int) -> dict[str, Any]:
    return {"student_id": record_id}


def _room(record_id: int) -> dict[str, Any]:
    return {"name": "Chor", "room_id": record_id}


GROUPS = "/api/active/groups"
END = "/api/active/groups/{id}/end"
DISPLAY = "/api/active/groups/{id}/visits/display"
ROSTER = "/api/ogs-groups/{id}/students"
PROBES = [
    # School 1's staff and school 2's ids: groups, a student, a room, a home group.
    Probe(S1_ADMIN, "POST", END, nord.NORD_HOMEWORK, 9999),
    Probe(S1_SCHMIDT, "POST", END, nord.NORD_HOMEWORK, 9999),  # 404, not 403 for not supervising
    Probe(S1_ADMIN, "GET", DISPLAY, nord.NORD_FOOTBALL, 9999),
    Probe(S1_SCHMIDT, "GET", DISPLAY, nord.NORD_HOMEWORK, 9999),
    Probe(S1_ADMIN, "POST", "/api/active/groups/{id}/visits", nord.NORD_HOMEWORK, 9999, _student),
    Probe(
        S1_ADMIN, "POST", "/api/active/groups/{id}/visits/461/checkout", nord.NORD_HOMEWORK, 9999
    ),
    Probe(
        S1_SCHMIDT, "POST", f"/api/active/groups/{HOMEWORK}/visits", nord.NORD_MAX, 9999, _student
    ),
    Probe(S1_SCHMIDT, "POST", f"/api/active/groups/{HOMEWORK}/visits/{{id}}/checkout", 461, 9999),
    Probe(S1_SCHMIDT, "POST", "/api/active/groups", 6, 99, _room),  # Schule Nord's free Mensa
    Probe(S1_ADMIN, "GET", ROSTER, 9, 999),
    Probe(S1_NOWAK, "GET", ROSTER, 9, 999),  # 404, not 403 for not leading
    # School 2's staff and school 1's ids.
    Probe(S2_ADMIN, "POST", END, HOMEWORK, 9999),
    Probe(S2_SCHMIDT, "GET", DISPLAY, HOMEWORK, 9999),  # the other Frau Schmidt's group
    Probe(
        S2_SCHMIDT, "POST", f"/api/active/groups/{nord.NORD_HOMEWORK}/visits", MAX, 9999, _student
    ),
    Probe(
        S2_SCHMIDT,
        "POST",
        f"/api/active/groups/{nord.NORD_HOMEWORK}/visits/{{id}}/checkout",
        MAX,
        9999,
    ),
    Probe(S2_ADMIN, "POST", "/api/active/groups", 3, 99, _room),  # school 1's free Mensa
    Probe(S2_NOWAK, "GET", ROSTER, 7, 999),  # the other Frau Nowak's home group
]


def test_an_id_of_the_other_school_is_404_with_the_body_of_a_missing_id_and_changes_nothing(
    two_schools: System,
) -> None:
    before = _afternoon(two_schools.engine)
    with two_schools.http() as client:
        api = Api(two_schools, client)
        # Act
        answers = [(p, p.send(api, p.foreign), p.send(api, p.missing)) for p in PROBES]

    for probe, foreign, missing in answers:
        where = (str(probe.caller), probe.method, probe.path, probe.foreign)
        assert (foreign.status_code, missing.status_code) == (404, 404), (where, foreign.text)
        assert str(probe.missing) in missing.json()["detail"], where
        expected = json.loads(missing.text.replace(str(probe.missing), str(probe.foreign)))
        assert foreign.json() == expected, where
        assert foreign.headers["content-type"] == missing.headers["content-type"], where
    assert _afternoon(two_schools.engine) == before


def test_each_school_lists_only_its_own_groups_rooms_students_tags_and_home_groups(
    two_schools: System,
) -> None:
    with two_schools.http() as client:
        api = Api(two_schools, client)
        # Arrange: children checked in by hand in both schools, a new activity at school 2.
        checkins = [
            api.call(S1_SCHMIDT, "POST", f"{GROUPS}/{HOMEWORK}/visits", _student(MAX)),
            api.call(S2_SCHMIDT, "POST", f"{GROUPS}/126/visits", _student(461)),
            api.call(S2_SCHMIDT, "POST", f"{GROUPS}/126/visits", _student(462)),
        ]
        started = api.call(S2_YILMAZ, "POST", GROUPS, {"name": "Basteln", "room_id": 6})
        new_id = started.json()["id"]
        # Act
        groups = {c: api.get(c, GROUPS) for c in (S1_SCHMIDT, S2_SCHMIDT, S2_YILMAZ)}
        all_groups = {c: api.get(c, f"{GROUPS}?all=1") for c in (S1_ADMIN, S2_ADMIN)}
        me = {c: api.get(c, "/api/me") for c in (S1_SCHMIDT, S1_NOWAK, S2_SCHMIDT, S2_NOWAK)}
        me_admin = api.get(S2_ADMIN, "/api/me")
        rooms = {c: api.get(c, "/api/rooms") for c in (S1_SCHMIDT, S2_SCHMIDT)}
        found = {c: api.get(c, "/api/students?query=max") for c in (S1_SCHMIDT, S2_SCHMIDT)}
        everyone = {c: api.get(c, "/api/students?limit=500") for c in (S1_SCHMIDT, S2_SCHMIDT)}
        tags = {c: api.get(c, "/api/students/tags") for c in (S1_ADMIN, S2_ADMIN)}
        home_groups = {c: api.get(c, "/api/ogs-groups") for c in (S1_ADMIN, S2_ADMIN)}
        rosters = {
            S1_NOWAK: api.get(S1_NOWAK, "/api/ogs-groups/7/students"),
            S2_NOWAK: api.get(S2_NOWAK, "/api/ogs-groups/9/students"),
        }
        present = {
            S1_SCHMIDT: api.get(S1_SCHMIDT, f"{GROUPS}/{HOMEWORK}/visits/display"),
            S2_SCHMIDT: api.get(S2_SCHMIDT, f"{GROUPS}/126/visits/display"),
        }

    assert [r.status_code for r in checkins] == [201, 201, 201]
    assert (started.status_code, started.json()["room_name"]) == (201, "Mensa")

    def summary(listed: list[dict[str, Any]]) -> set[tuple[str, str, tuple[str, ...], int]]:
        """As a set: a new group's id comes from a sequence, before or after the imported."""
        return {
            (g["id"], g["room_id"], tuple(g["supervisor_ids"]), g["student_count"]) for g in listed
        }

    assert summary(groups[S1_SCHMIDT]) == {("124", "1", ("1",), 1)}
    assert summary(groups[S2_SCHMIDT]) == {("126", "4", ("5",), 2)}
    assert summary(groups[S2_YILMAZ]) == {("125", "5", ("6",), 0), (new_id, "6", ("6",), 0)}
    assert [g["id"] for g in all_groups[S1_ADMIN]] == ["123", "124"]
    assert {g["id"] for g in all_groups[S2_ADMIN]} == {"125", "126", new_id}
    assert len(all_groups[S2_ADMIN]) == 3

    assert [g["id"] for g in me[S1_SCHMIDT]["active_groups"]] == ["124"]
    assert [g["id"] for g in me[S2_SCHMIDT]["active_groups"]] == ["126"]
    assert me[S1_NOWAK]["ogs_groups"] == [
        {"id": "7", "name": "Klasse 2b", "room_id": "1", "room_name": "Raum 101"}
    ]
    assert me[S2_NOWAK]["ogs_groups"] == [
        {"id": "9", "name": "Klasse 2b", "room_id": "4", "room_name": "Raum 101"}
    ]
    assert (me_admin["id"], me_admin["admin"], me_admin["ogs_groups"]) == ("8", True, [])

    def room_rows(listed: list[dict[str, Any]]) -> list[tuple[str, str, str | None, int]]:
        return [(r["id"], r["name"], r["active_group_id"], r["student_count"]) for r in listed]

    assert room_rows(rooms[S1_SCHMIDT]) == [
        ("1", "Raum 101", "124", 1),
        ("2", "Turnhalle", "123", 0),
        ("3", "Mensa", None, 0),
    ]
    assert room_rows(rooms[S2_SCHMIDT]) == [
        ("4", "Raum 101", "126", 2),
        ("5", "Turnhalle", "125", 0),
        ("6", "Mensa", new_id, 0),
    ]

    school_1_ids = {str(i) for i in SCHOOL_1_STUDENTS}
    assert found[S1_SCHMIDT] and {s["student_id"] for s in found[S1_SCHMIDT]} <= school_1_ids
    assert [(s["student_id"], s["student_name"]) for s in found[S2_SCHMIDT]] == [
        ("461", "Max Muster"),
        ("464", "Max Richter"),
    ]
    assert {s["student_id"] for s in everyone[S1_SCHMIDT]} == school_1_ids
    assert sorted(s["student_id"] for s in everyone[S2_SCHMIDT]) == [
        str(i) for i in nord.NORD_STUDENTS
    ]

    assert {t["student_id"] for t in tags[S1_ADMIN]} == school_1_ids
    assert [t["student_id"] for t in tags[S2_ADMIN]] == [str(i) for i in nord.NORD_STUDENTS]
    school_1_tags = {t["tag"]: t["student_id"] for t in tags[S1_ADMIN]}
    assert {t["tag"] for t in tags[S2_ADMIN]} <= set(school_1_tags)  # the same card numbers
    assert school_1_tags["04A1B20000"] == "401"  # … each school's own child

    assert [g["id"] for g in home_groups[S1_ADMIN]] == ["7", "8"]
    assert [g["id"] for g in home_groups[S2_ADMIN]] == ["9", "10"]

    assert {c["student_id"] for c in rosters[S1_NOWAK]} <= school_1_ids
    assert len(rosters[S1_NOWAK]) == 30
    where = [
        (c["student_id"], c["status"], c["active_group_id"], c["room_name"])
        for c in rosters[S2_NOWAK]
    ]
    assert where == [
        ("461", "present", "126", "Raum 101"),  # Muster
        ("463", "away", None, None),  # Neumann
        ("462", "present", "126", "Raum 101"),  # Schulz
    ]
    assert [(p["student_id"], p["student_name"]) for p in present[S1_SCHMIDT]] == [
        ("401", "Max Muster")
    ]
    assert [(p["student_id"], p["student_name"]) for p in present[S2_SCHMIDT]] == [
        ("461", "Max Muster"),
        ("462", "Emma Schulz"),
    ]


@dataclass(frozen=True)
class RandomRoute:
    """A route naming one record of `kind`; `path` and `body` get the id (and the caller's
    own group, for a check-in)."""

    kind: str
    method: str
    path: str
    body: Callable[[int], dict[str, Any]] | None = None


RANDOM_ROUTES = [
    RandomRoute("group", "GET", DISPLAY),
    RandomRoute("home_group", "GET", ROSTER),
    RandomRoute("student", "POST", "/api/active/groups/{own}/visits", _student),
    RandomRoute("room", "POST", "/api/active/groups", _room),
]
RECORDS = {  # kind → school → ids
    "group": {1: [FOOTBALL, HOMEWORK], 2: [nord.NORD_FOOTBALL, nord.NORD_HOMEWORK]},
    "home_group": {1: [7, 8], 2: nord.NORD_HOME_GROUPS},
    "student": {1: [401, 402, 431, 432, 460], 2: nord.NORD_STUDENTS},
    "room": {1: [1, 2, 3], 2: nord.NORD_ROOMS},
}
MISSING = {"group": 9999, "home_group": 999, "student": 9999, "room": 99}
# Who asks, and the running group of their school they may check children in to.
CALLERS = [(S1_SCHMIDT, HOMEWORK), (S1_ADMIN, FOOTBALL), (S2_SCHMIDT, 126), (S2_ADMIN, 125)]
SEED, PICKS = 13, 80


def test_random_callers_routes_and_ids_across_schools_are_404_exactly_for_foreign_ids(
    two_schools: System,
) -> None:
    rng = random.Random(SEED)
    picks = [
        (*rng.choice(CALLERS), rng.choice(RANDOM_ROUTES), rng.choice([1, 2, None]))
        for _ in range(PICKS)
    ]
    broken: list[str] = []
    missing_bodies: dict[tuple[Caller, str], Any] = {}

    with two_schools.http() as client:
        api = Api(two_schools, client)

        def send(caller: Caller, own: int, route: RandomRoute, record_id: int) -> httpx.Response:
            path = route.path.format(id=record_id, own=own)
            body = None if route.body is None else route.body(record_id)
            return api.call(caller, route.method, path, body)

        for caller, own, route, school in picks:
            # Act
            ids = RECORDS[route.kind]
            record_id = MISSING[route.kind] if school is None else rng.choice(ids[school])
            response = send(caller, own, route, record_id)
            key = (caller, route.path)
            if key not in missing_bodies:
                missing_bodies[key] = send(caller, own, route, MISSING[route.kind]).text
            expect_404 = school != caller.school_id
            missing_id = str(MISSING[route.kind])
            expected = json.loads(missing_bodies[key].replace(missing_id, str(record_id)))
            if (response.status_code == 404) != expect_404 or (
                expect_404 and response.json() != expected
            ):
                what = f"{caller} {route.method} {route.path} id={record_id}"
                broken.append(f"{what}: {response.status_code} {response.text}")

    assert broken == [], f"seed {SEED}"
    kinds = {
        (route.kind, school is not None and school != caller.school_id)
        for caller, _, route, school in picks
    }
    assert {(kind, True) for kind in RECORDS} <= kinds  # every kind was tried across schools
    with Session(two_schools.engine) as session:  # and no row joins two schools
        crossing_visits = session.exec(
            select(Visit.id)
            .join(Student, col(Student.id) == col(Visit.student_id))
            .join(ActiveGroup, col(ActiveGroup.id) == col(Visit.active_group_id))
            .where(Student.school_id != ActiveGroup.school_id)
        ).all()
        crossing_supervisions = session.exec(
            select(Supervision.id)
            .join(Staff, col(Staff.id) == col(Supervision.staff_id))
            .join(ActiveGroup, col(ActiveGroup.id) == col(Supervision.active_group_id))
            .where(Staff.school_id != ActiveGroup.school_id)
        ).all()
    assert (crossing_visits, crossing_supervisions) == ([], [])
