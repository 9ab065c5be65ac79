"""Schools as tenants end to end (issue 13): two schools in one database, each blind to the other.

The schools (tests/support/schools.py) share room, group and student names and reuse each
other's card numbers; their ids interleave. What tells a leak: a response to one school's
staff that names a string or an id only the other school has (`leak_markers`), or that
answers another school's id differently from an id nobody has (an existence leak).

The REST test is property-style: a seeded `random.Random` draws (route, ids) pairs, each id
from the caller's school, the other school or nowhere, and checks every answer; it collects
every violation and fails once, listing them all. Stream tests use sentinels: event ids
increase in commit order, so an event that should not arrive would come before the
sentinel that the same stream does get.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from edge_bridge.models import Device, OgsGroup, RfidTag, Room, School, Staff, Student
from edge_bridge.wire import Topics
from edge_ops.importer import import_data
from tests.factories import school_document
from tests.integration.conftest import System
from tests.support.reader import TestReader
from tests.support.schools import (
    B_ONLY_NAMED,
    SCHOOL_A,
    SCHOOL_B,
    Document,
    Markers,
    Staffing,
    device_ids,
    display_name,
    find_leaks,
    ids_of,
    leak_markers,
    school_a_document,
    school_b_document,
    student_tags,
    tag_of,
    two_schools,
    word_pattern,
)
from tests.support.sse import Frame, SseStream

pytestmark = pytest.mark.integration

SEED = 1313
EXTRA_DRAWS = 150  # random (route, ids) pairs beyond one of each origin combination
MISSING_OFFSET = 900_000  # another school's id + this: an id nobody has, of the same shape
WAIT_SECONDS = 10.0
OWN, OTHER, MISSING = "own", "other", "missing"


# ---- the two sides -----------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One direction: the staff of `own` ask for things, including `other`'s ids."""

    own: Staffing
    other: Staffing
    own_doc: Document
    other_doc: Document

    @property
    def markers(self) -> Markers:
        return leak_markers([self.own_doc], [self.other_doc])


def _sides() -> dict[str, Side]:
    a, b = school_a_document(), school_b_document()
    return {
        "school-a-staff-asks-for-b": Side(SCHOOL_A, SCHOOL_B, a, b),
        "school-b-staff-asks-for-a": Side(SCHOOL_B, SCHOOL_A, b, a),
    }


def _system(make_system: Callable[..., System]) -> System:
    return make_system(documents=two_schools())


def _get(http: httpx.Client, system: System, path: str, staff: int, school: int) -> httpx.Response:
    return http.get(path, headers=system.auth(staff, school_id=school))


# ---- streams -----------------------------------------------------------------------------


def _open(
    system: System, staff_id: int, school_id: int, *, last_event_id: int | None = None
) -> tuple[SseStream, Frame]:
    """A stream of that staff member (token of their school) past its `connected` frame."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    stream = system.stream(token=system.token(staff_id, school_id=school_id), headers=headers)
    assert stream.status_code == 200, stream.body
    connected = stream.next_event()
    assert connected.event == "connected", connected
    return stream, connected


def _events_until(
    stream: SseStream, is_sentinel: Callable[[Frame], bool], *, what: str
) -> list[Frame]:
    """The event frames before the first one `is_sentinel` accepts (bounded wait)."""
    before: list[Frame] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        try:
            frame = stream.next_event(timeout=max(0.05, remaining))
        except TimeoutError:
            got = [f"{f.event} {f.data}" for f in before]
            msg = f"{what}: no sentinel within {WAIT_SECONDS} s; got {got}"
            raise AssertionError(msg) from None
        if is_sentinel(frame):
            return before
        before.append(frame)


def _checkin_of(student_id: int) -> Callable[[Frame], bool]:
    def matches(frame: Frame) -> bool:
        return frame.event == "student_checkin" and frame.json["data"].get("student_id") == str(
            student_id
        )

    return matches


def _occupancy_of(room_id: int, *, at_least: int = 1) -> Callable[[Frame], bool]:
    def matches(frame: Frame) -> bool:
        if frame.event != "occupancy":
            return False
        rooms = {room["room_id"]: room["student_count"] for room in frame.json["data"]["rooms"]}
        return rooms.get(str(room_id), -1) >= at_least

    return matches


def _device_status_of(device_id: str) -> Callable[[Frame], bool]:
    def matches(frame: Frame) -> bool:
        return frame.event == "device_status" and frame.json["data"].get("device_id") == device_id

    return matches


def _frame_leaks(frames: Iterable[Frame], markers: Markers) -> list[str]:
    found = []
    for frame in frames:
        value = frame.json if frame.data else {}
        found += [f"{frame.event} id={frame.id}: {leak}" for leak in find_leaks(value, markers)]
    return found


def _publish_online(system: System, device_id: str) -> TestReader:
    """The reader, after its retained `online` status (keep using this one: a second
    connection with the same client id would take the first one's place)."""
    reader = system.reader(device_id)
    topic = Topics(system.settings.mqtt_topic_prefix).status(device_id)
    published = reader.client.publish(topic, json.dumps({"online": True}), qos=1, retain=True)
    published.wait_for_publish(5)
    return reader


# ---- state both schools have before the REST checks --------------------------------------

# (reader, student) of each school: children present in both schools' rooms
_CHECK_INS = {
    SCHOOL_A.school_id: [("reader-101", 401), ("reader-101", 403), ("reader-turnhalle", 431)],
    SCHOOL_B.school_id: [("nord-101", 522), ("nord-101", 504), ("nord-turnhalle", 502)],
}


def _populate(system: System, sides: Iterable[Side]) -> None:
    """Check children of both schools in at their own readers; a reused tag names the child
    of the reader's school."""
    for side in sides:
        for device, student in _CHECK_INS[side.own.school_id]:
            feedback = system.reader(device).scan(tag_of(side.own_doc, student))
            assert feedback["result"] == "checked_in", (device, student, feedback)
            assert feedback.get("student_name") == display_name(side.own_doc, student), feedback


# ---- the REST property -------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A route with id slots; `{slot}` in the path, `body(values)` for the JSON body."""

    method: str
    path: str
    slots: tuple[str, ...]
    body: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    admin_only: bool = False
    path_id: bool = True  # the first slot is a path id: another school's must be 404
    own_may_404: bool = False  # own ids can be missing here (a child who is not there)
    never_own: frozenset[str] = frozenset()  # slots not drawn from the own school (they destroy)


ID_ROUTES = [
    Route("GET", "/api/active/groups/{group}/visits/display", ("group",)),
    Route(
        "POST",
        "/api/active/groups/{group}/visits",
        ("group", "student"),
        body=lambda v: {"student_id": v["student"]},
    ),
    Route(
        "POST",
        "/api/active/groups/{group}/visits/{student}/checkout",
        ("group", "student"),
        own_may_404=True,
    ),
    Route(
        "POST",
        "/api/active/groups",
        ("room",),
        body=lambda v: {"name": f"Probe {v['draw']}", "room_id": v["room"]},
    ),
    Route("GET", "/api/ogs-groups/{ogs}/students", ("ogs",)),
    Route("GET", "/api/attendance?group={ogs}", ("ogs",), admin_only=True, path_id=False),
    Route(
        "GET", "/api/attendance?group={ogs}&format=csv", ("ogs",), admin_only=True, path_id=False
    ),
    Route("GET", "/api/attendance?room={room}", ("room",), admin_only=True, path_id=False),
    Route("GET", "/api/students?query={word}", ("word",), path_id=False),
    # Ending a group of one's own school ends it for good: only the other's and missing ids.
    Route("POST", "/api/active/groups/{group}/end", ("group",), never_own=frozenset({"group"})),
]

LIST_ROUTES = [
    ("/api/me", False),
    ("/api/active/groups", False),
    ("/api/active/groups?all=1", True),
    ("/api/rooms", False),
    ("/api/students?query=Muster", False),
    ("/api/students?query=&limit=500", False),
    ("/api/students/tags", True),
    ("/api/ogs-groups", True),
    ("/api/devices", True),
    ("/api/attendance", True),
    ("/api/attendance?format=csv", True),
    ("/api/occupancy", True),
    ("/api/sse/stats", True),
]


def _words(own_doc: Document, markers: Markers) -> list[str]:
    """Search words of a school: its last names (some shared with the other school)."""
    return sorted({s["last_name"] for s in own_doc["students"]} - markers.texts)


def _pools(side: Side) -> dict[str, dict[str, list[Any]]]:
    """Per slot kind: the ids (or words) of the own school, of the other, of nobody."""
    own_markers = leak_markers([side.other_doc], [side.own_doc])
    other_words = sorted({s["last_name"] for s in side.other_doc["students"]} & side.markers.texts)

    def kinds(doc: Document) -> dict[str, list[Any]]:
        return {
            "group": sorted(ids_of(doc, "active_groups")),
            "student": sorted(ids_of(doc, "students")),
            "room": sorted(ids_of(doc, "rooms")),
            "ogs": sorted(ids_of(doc, "ogs_groups")),
        }

    own, other = kinds(side.own_doc), kinds(side.other_doc)
    own["word"] = _words(side.own_doc, own_markers)
    other["word"] = other_words
    missing: dict[str, list[Any]] = {
        kind: [MISSING_OFFSET + value for value in values]
        for kind, values in other.items()
        if kind != "word"
    }
    missing["word"] = [f"Unbekannt{index}" for index in range(len(other_words))]
    return {OWN: own, OTHER: other, MISSING: missing}


def _missing_for(kind: str, value: Any, pools: dict[str, dict[str, list[Any]]]) -> Any:
    if kind == "word":
        return pools[MISSING]["word"][pools[OTHER]["word"].index(value)]
    return MISSING_OFFSET + value


@dataclass
class Draw:
    """One request: a route, a caller, and for each slot an origin and a value."""

    route: Route
    caller: int
    origins: dict[str, str]
    values: dict[str, Any]
    number: int

    def request(self, values: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
        filled = {**values, "draw": self.number}
        path = self.route.path.format(**filled)
        body = self.route.body(filled) if self.route.body else None
        return self.route.method, path, body

    def label(self) -> str:
        slots = ", ".join(f"{k}={self.values[k]}({self.origins[k]})" for k in self.route.slots)
        return f"{self.route.method} {self.route.path} as staff {self.caller} [{slots}]"


def _draws(side: Side, rng: random.Random) -> list[Draw]:
    """Every origin combination of every route once, then `EXTRA_DRAWS` random ones;
    destructive routes last (ending another school's group, if that leaked, changes it)."""
    pools = _pools(side)
    callers = [side.own.supervisor, side.own.admin, side.own.leader]
    draws: list[Draw] = []

    def draw(route: Route, origins: dict[str, str]) -> None:
        values = {slot: rng.choice(pools[origins[slot]][slot]) for slot in route.slots}
        caller = side.own.admin if route.admin_only else rng.choice(callers)
        draws.append(Draw(route, caller, origins, values, len(draws)))

    for route in ID_ROUTES:
        for combination in itertools.product((OWN, OTHER, MISSING), repeat=len(route.slots)):
            origins = dict(zip(route.slots, combination, strict=True))
            if not any(origins[slot] == OWN for slot in route.never_own):
                draw(route, origins)
    for _ in range(EXTRA_DRAWS):
        route = rng.choice(ID_ROUTES)
        origins = {
            slot: rng.choice([OTHER, MISSING] if slot in route.never_own else [OWN, OTHER, OTHER])
            for slot in route.slots
        }
        draw(route, origins)
    return sorted(draws, key=lambda d: (d.route.path.endswith("/end"), d.number))


@dataclass
class Findings:
    """Every violation of a run, so one failure lists all of them (for the integrator)."""

    items: list[str] = field(default_factory=list)

    def add(self, where: str, problem: str) -> None:
        self.items.append(f"{where}: {problem}")

    def leaks(self, where: str, response: httpx.Response, markers: Markers) -> None:
        for leak in find_leaks(_body(response), markers):
            self.add(where, f"shows the other school's {leak}")

    def report(self) -> str:
        """Grouped by request: each with its count and its first few problems."""
        grouped: dict[str, list[str]] = {}
        for item in self.items:
            where, _, problem = item.partition(": ")
            grouped.setdefault(where, []).append(problem)
        lines = [
            f"  - {where} ({len(problems)}): " + " | ".join(problems[:3])
            for where, problems in list(grouped.items())[:80]
        ]
        if len(grouped) > 80:
            lines.append(f"  … and {len(grouped) - 80} more requests")
        return f"{len(self.items)} isolation failures in {len(grouped)} requests:\n" + "\n".join(
            lines
        )


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _normalized(response: httpx.Response, replacements: dict[Any, str]) -> tuple[int, str]:
    text = response.text
    for value, placeholder in replacements.items():
        text = word_pattern(value).sub(placeholder, text)
    return response.status_code, text


def _check_draw(
    http: httpx.Client,
    system: System,
    side: Side,
    draw: Draw,
    *,
    pools: dict[str, dict[str, list[Any]]],
    findings: Findings,
    created: set[str],
) -> None:
    """One drawn request: no marker of the other school in the answer, and another school's
    id answered exactly like an id nobody has (the same status and body, but for the id)."""
    headers = system.auth(draw.caller, school_id=side.own.school_id)
    foreign = [slot for slot in draw.route.slots if draw.origins[slot] == OTHER]
    baseline = None
    if foreign:  # first: a request with ids nobody has changes nothing
        missing = {slot: _missing_for(slot, draw.values[slot], pools) for slot in foreign}
        method, path, body = draw.request({**draw.values, **missing})
        baseline = (http.request(method, path, json=body, headers=headers), missing)
    method, path, body = draw.request(draw.values)
    response = http.request(method, path, json=body, headers=headers)
    where = draw.label()
    # A group the caller just started is theirs, whatever its number (on PostgreSQL new ids
    # start at 1, which is also an id of the other school's room or staff).
    starts_group = draw.route.method == "POST" and draw.route.path == "/api/active/groups"
    if starts_group and response.status_code == 201 and draw.origins["room"] == OWN:
        created.add(response.json()["id"])
    findings.leaks(where, response, side.markers.without_ids(created))
    if response.status_code >= 500:
        findings.add(where, f"server error {response.status_code} {response.text[:200]}")
    if baseline is None:
        if (
            response.status_code == 404
            and not draw.route.own_may_404
            and all(origin == OWN for origin in draw.origins.values())
        ):
            findings.add(where, f"an id of the caller's own school answered 404: {response.text}")
        return
    missing_response, missing = baseline
    first = draw.route.slots[0]
    if draw.route.path_id and draw.origins[first] == OTHER and response.status_code != 404:
        findings.add(
            where,
            f"another school's {first} id answered {response.status_code}, not 404: "
            f"{response.text[:200]}",
        )
    actual = _normalized(response, {draw.values[slot]: f"<{slot}>" for slot in foreign})
    expected = _normalized(missing_response, {missing[slot]: f"<{slot}>" for slot in foreign})
    if actual != expected:
        findings.add(
            where,
            f"answered unlike an id nobody has: {actual[0]} {actual[1][:160]!r} "
            f"vs {expected[0]} {expected[1][:160]!r}",
        )


def _ids(items: Iterable[dict[str, Any]], key: str = "id") -> set[str]:
    return {str(item[key]) for item in items}


def _strs(values: Iterable[object]) -> set[str]:
    return {str(value) for value in values}


def _check_lists(
    http: httpx.Client,
    system: System,
    side: Side,
    *,
    findings: Findings,
    own_streams: int,
) -> None:
    """The routes without an id: no marker in any answer, and exactly the own school's set."""
    own, doc, school = side.own, side.own_doc, side.own.school_id
    for (path, admin_only), caller in itertools.product(
        LIST_ROUTES, (own.supervisor, own.admin, own.leader)
    ):
        if admin_only and caller != own.admin:
            continue
        response = _get(http, system, path, caller, school)
        where = f"GET {path} as staff {caller}"
        if response.status_code != 200:
            findings.add(where, f"answered {response.status_code} {response.text[:200]}")
            continue
        findings.leaks(where, response, side.markers)
        if path == "/api/me":
            me = response.json()
            extra = _ids(me["active_groups"]) - _strs(ids_of(doc, "active_groups"))
            extra |= _ids(me["ogs_groups"]) - _strs(ids_of(doc, "ogs_groups"))
            if extra:
                findings.add(where, f"lists groups not of the caller's school: {sorted(extra)}")

    def expect_set(path: str, actual: set[str], wanted: set[str], *, subset: bool = False) -> None:
        wrong = actual - wanted if subset else actual ^ wanted
        if wrong:
            findings.add(
                f"GET {path} as admin {own.admin}",
                f"ids {'beyond' if subset else 'differ from'} the school's: {sorted(wrong)}",
            )

    def admin_json(path: str) -> Any:
        response = _get(http, system, path, own.admin, school)
        return response.json() if response.status_code == 200 else []

    expect_set("/api/rooms", _ids(admin_json("/api/rooms")), _strs(ids_of(doc, "rooms")))
    ogs = _strs(ids_of(doc, "ogs_groups"))
    expect_set("/api/ogs-groups", _ids(admin_json("/api/ogs-groups")), ogs)
    expect_set("/api/devices", _ids(admin_json("/api/devices")), set(device_ids(doc)))
    students = _strs(ids_of(doc, "students"))
    everyone = admin_json("/api/students?query=&limit=500")
    expect_set("/api/students?limit=500", _ids(everyone, "student_id"), students)
    tags = admin_json("/api/students/tags")
    expect_set("/api/students/tags", _ids(tags, "student_id"), _strs(student_tags(doc)))
    own_tags = {str(k): v for k, v in student_tags(doc).items()}
    wrong_tags = [t for t in tags if own_tags.get(t["student_id"]) != t["tag"]]
    if wrong_tags:
        findings.add("GET /api/students/tags", f"tags not the school's: {len(wrong_tags)}")
    groups = admin_json("/api/active/groups?all=1")
    expect_set("/api/active/groups?all=1", _ids(groups), _strs(ids_of(doc, "active_groups")))
    attendance = admin_json("/api/attendance")
    expect_set("/api/attendance", _ids(attendance, "student_id"), students, subset=True)
    occupancy = admin_json("/api/occupancy")
    rooms = _ids(occupancy["rooms"] if occupancy else [], "room_id")
    expect_set("/api/occupancy", rooms, _strs(ids_of(doc, "rooms")))
    stats = admin_json("/api/sse/stats")
    if stats and stats["total_clients"] != own_streams:
        findings.add(
            "GET /api/sse/stats",
            f"total_clients {stats['total_clients']} counts streams beyond the school's "
            f"{own_streams}",
        )
    groups_subscribed = set(stats["groups"]) if stats else set()
    expect_set(
        "/api/sse/stats groups",
        groups_subscribed,
        _strs(ids_of(doc, "active_groups")),
        subset=True,
    )


@pytest.mark.parametrize("side_name", list(_sides()))
def test_every_route_answers_another_schools_ids_like_missing_ones_and_shows_nothing_of_it(
    side_name: str, make_system: Callable[..., System]
) -> None:
    # Arrange: both schools busy, a stream of each open, so every list has something to leak.
    side = _sides()[side_name]
    system = _system(make_system)
    _populate(system, _sides().values())
    _own_stream, connected = _open(system, side.own.supervisor, side.own.school_id)
    _open(system, side.other.supervisor, side.other.school_id)
    _open(system, side.other.admin, side.other.school_id)
    findings = Findings()
    for leak in find_leaks(connected.json, side.markers):
        findings.add(f"connected frame of staff {side.own.supervisor}", leak)
    created: set[str] = set()
    pools = _pools(side)
    draws = _draws(side, random.Random(SEED))

    # Act + Assert (collected): the lists first, then every drawn (route, ids) pair.
    with system.http() as http:
        _check_lists(http, system, side, findings=findings, own_streams=1)
        for draw in draws:
            _check_draw(http, system, side, draw, pools=pools, findings=findings, created=created)

    assert len(draws) > EXTRA_DRAWS
    assert not findings.items, findings.report()


# ---- the event stream --------------------------------------------------------------------


def test_school_a_streams_get_no_event_of_school_b_live_or_replayed_while_b_streams_get_them(
    make_system: Callable[..., System],
) -> None:
    # Arrange: A's admin, supervisor and home-group leader, B's the same, all connected.
    system = _system(make_system)
    a_doc, b_doc = school_a_document(), school_b_document()
    b_markers = leak_markers([a_doc], [b_doc])
    a_roles = {"admin": SCHOOL_A.admin, "supervisor": SCHOOL_A.supervisor, "leader": 3}
    a_streams = {role: _open(system, staff, 1) for role, staff in a_roles.items()}
    b_admin, _ = _open(system, SCHOOL_B.admin, 2)
    b_supervisor, _ = _open(system, SCHOOL_B.supervisor, 2)
    b_leader, _ = _open(system, SCHOOL_B.leader, 2)
    start_id = int(a_streams["admin"][1].id or 0)
    for role, (_stream, connected) in a_streams.items():
        assert find_leaks(connected.json, b_markers) == [], role

    # Act: B's reader comes online and B's readers scan (children, and a staff card that is
    # one of A's student cards); then, as the sentinel, two of A's children check in at A.
    nord = _publish_online(system, "nord-101")
    _events_until(b_admin, _device_status_of("nord-101"), what="B admin: nord-101 online")
    nord_gym = system.reader("nord-turnhalle")
    b_results = [
        nord.scan(tag_of(b_doc, 522)),  # Yara Quistorp, on A's Leon Neumann's card number
        nord.scan(tag_of(b_doc, 502)),
        nord.scan("04A1B20003"),  # B's Herr Nordmann: A's Mia Schneider's card number
        nord_gym.scan(tag_of(b_doc, 504)),
    ]
    reader = system.reader("reader-101")
    a_results = [reader.scan(tag_of(a_doc, 401)), reader.scan(tag_of(a_doc, 403))]

    # Assert: the scans were each school's own.
    assert [r["result"] for r in b_results] == [
        "checked_in",
        "checked_in",
        "supervisor_authenticated",
        "checked_in",
    ]
    assert b_results[0].get("student_name") == "Yara Quistorp"
    assert [(r["result"], r.get("student_name")) for r in a_results] == [
        ("checked_in", "Max Muster"),
        ("checked_in", "Leon Neumann"),
    ]
    # Live: B's streams got B's events (so the check below can fail) …
    assert _events_until(b_supervisor, _checkin_of(522), what="B supervisor") == []
    _events_until(b_leader, _checkin_of(522), what="B leader")
    _events_until(b_admin, _occupancy_of(12), what="B admin")
    # … and A's streams, up to A's own events, nothing of B.
    sentinels = {
        "admin": _occupancy_of(1, at_least=2),
        "supervisor": _checkin_of(403),
        "leader": _checkin_of(403),
    }
    live = {
        role: _events_until(stream, sentinels[role], what=f"A {role} live")
        for role, (stream, _connected) in a_streams.items()
    }
    live_leaks = {role: _frame_leaks(frames, b_markers) for role, frames in live.items()}
    assert live_leaks == {role: [] for role in live}

    # Replay: the same streams again from before B's activity, by Last-Event-ID.
    replayed = {
        role: _events_until(
            _open(system, staff, 1, last_event_id=start_id)[0],
            sentinels[role],
            what=f"A {role} replay",
        )
        for role, staff in a_roles.items()
    }
    replay_leaks = {role: _frame_leaks(frames, b_markers) for role, frames in replayed.items()}
    assert replay_leaks == {role: [] for role in replayed}
    b_replay, _ = _open(system, SCHOOL_B.supervisor, 2, last_event_id=start_id)
    _events_until(b_replay, _checkin_of(522), what="B supervisor replay")


def _scrape(system: System) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with system.http() as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _scans_by_school(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float],
) -> dict[str, float]:
    """`edge_scans_total` summed over results per `school` label ("<none>" without one)."""
    totals: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if name == "edge_scans_total":
            school = dict(labels).get("school", "<none>")
            totals[school] = totals.get(school, 0.0) + value
    return totals


def _gauge_by_school(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str
) -> dict[str, float]:
    """A per-school gauge's non-zero values by `school` label."""
    return {
        dict(labels).get("school", "<none>"): value
        for (sample, labels), value in samples.items()
        if sample == name and value
    }


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after.keys() | before}


def _scans_once_counted(system: System, before: dict[str, float], total: float) -> dict[str, float]:
    """Scrape until the scans since `before` add up to `total` (a counter moves just after
    the feedback goes out), at most WAIT_SECONDS; the last scrape either way."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        counts = _scans_by_school(_scrape(system))
        if sum(_delta(counts, before).values()) >= total or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def test_a_scan_storm_at_school_a_reaches_no_stream_of_school_b_and_metrics_count_per_school(
    make_system: Callable[..., System],
) -> None:
    # Arrange: every kind of B stream; A's readers in three rooms with running groups.
    system = _system(make_system)
    a_doc, b_doc = school_a_document(), school_b_document()
    a_markers = leak_markers([b_doc], [a_doc])
    b_markers = leak_markers([a_doc], [b_doc])
    b_streams = {
        "admin 22": _open(system, SCHOOL_B.admin, 2)[0],
        "supervisor 24": _open(system, SCHOOL_B.supervisor, 2)[0],
        "supervisor+leader 26": _open(system, SCHOOL_B.second_supervisor, 2)[0],
        "leader 28": _open(system, SCHOOL_B.leader, 2)[0],
    }
    readers = {d: system.reader(d) for d in ("reader-101", "reader-turnhalle", "reader-bibliothek")}
    a_tags = student_tags(a_doc)
    fixture = [s["id"] for s in school_document()["students"]]
    extra = sorted(set(a_tags) - set(fixture))
    b_only_tags = [*sorted(set(student_tags(b_doc).values()) - set(a_tags.values())), "B1C2D3E4"]
    waves = [
        [("reader-101", a_tags[s]) for s in fixture + extra]
        + [("reader-101", tag) for tag in b_only_tags],
        [("reader-turnhalle", a_tags[s]) for s in fixture[:20]]
        + [("reader-bibliothek", a_tags[s]) for s in extra],
    ]
    owner = {tag: student for student, tag in a_tags.items()}
    before = _scans_by_school(_scrape(system))

    # Act: the storm, each wave sent at once, then its feedback awaited.
    feedback: list[tuple[str, dict[str, Any]]] = []
    for wave in waves:
        sent = [(tag, readers[device], readers[device].send(tag)) for device, tag in wave]
        feedback += [(tag, reader.wait_feedback(scan_id)) for tag, reader, scan_id in sent]
    sent_count = sum(len(wave) for wave in waves)
    after_storm = _scans_once_counted(system, before, sent_count)
    nord, nord_gym = system.reader("nord-101"), system.reader("nord-turnhalle")
    assert nord.scan(tag_of(b_doc, 504))["result"] == "checked_in"  # sentinels: 132, home 32
    assert nord_gym.scan(tag_of(b_doc, 502))["result"] == "checked_in"  # 122, home group 34
    after_b = _scans_once_counted(system, before, sent_count + 2)

    # Assert: A's readers answered with A's children only; B's cards are unknown at A.
    assert len(feedback) == sent_count
    wrong = []
    for tag, answer in feedback:
        if tag in owner:
            good = answer["result"] in {"checked_in", "transferred"} and answer.get(
                "student_name"
            ) == display_name(a_doc, owner[tag])
        else:
            good = answer["result"] == "unknown_tag" and "student_name" not in answer
        if not good or find_leaks(answer, b_markers):
            wrong.append((tag, answer))
    assert wrong == []
    # No B stream saw anything before B's own sentinel events.
    sentinels = {
        "admin 22": _occupancy_of(12),
        "supervisor 24": _checkin_of(504),
        "supervisor+leader 26": _checkin_of(502),
        "leader 28": _checkin_of(504),
    }
    seen = {
        name: _events_until(stream, sentinels[name], what=f"B {name}")
        for name, stream in b_streams.items()
    }
    assert {name: _frame_leaks(frames, a_markers) for name, frames in seen.items()} == {
        name: [] for name in seen
    }
    assert {name: [f.event for f in frames] for name, frames in seen.items()} == {
        name: [] for name in seen
    }
    # /metrics: per-school scan counts (label `school`) add up.
    storm = _delta(after_storm, before)
    assert "<none>" not in after_b, f"edge_scans_total without a school label: {after_b}"
    assert storm.get("1", 0.0) == sent_count, storm
    assert storm.get("2", 0.0) == 0, storm
    assert sum(storm.values()) == sent_count, storm
    assert _delta(after_b, after_storm).get("2", 0.0) == 2
    # The per-school gauges: open visits (67 of A's children, B's two) and streams (B's four).
    samples = _scrape(system)
    assert _gauge_by_school(samples, "edge_open_visits") == {"1": len(a_tags), "2": 2}
    streams = _gauge_by_school(samples, "edge_sse_clients_by_school")
    assert streams == {"2": len(b_streams)}
    assert sum(streams.values()) == samples[("edge_sse_clients_connected", frozenset())]


# ---- the single-school path --------------------------------------------------------------


def test_a_file_without_a_school_lands_in_school_one_and_leaves_school_b_alone(
    school_engine: Engine,
) -> None:
    # Arrange: the fixture school (a file without `school`), then school B.
    import_data(school_engine, json.dumps(school_b_document()).encode())
    b_tag = tag_of(school_b_document(), B_ONLY_NAMED[2])
    addition = {
        "rooms": [{"id": 77, "name": "Werkraum Ost"}],
        "students": [
            {"id": 777, "first_name": "Ida", "last_name": "Ostermann", "tag": b_tag},
        ],
    }

    # Act: one more file without `school`, reusing a card number of school B.
    import_data(school_engine, json.dumps(addition).encode())

    # Assert
    with Session(school_engine) as session:
        schools = {school.id: school.name for school in session.exec(select(School)).all()}
        owned = {
            model.__name__: {row.id: row.school_id for row in session.exec(select(model)).all()}
            for model in (Room, Staff, OgsGroup, Student, Device)
        }
        tags = {
            (t.school_id, t.tag): (t.student_id, t.staff_id) for t in session.exec(select(RfidTag))
        }
    assert schools[2] == "Schule Nord" and 1 in schools
    fixture = school_document()
    for model, section in (
        ("Room", "rooms"),
        ("Staff", "staff"),
        ("OgsGroup", "ogs_groups"),
        ("Student", "students"),
    ):
        assert {owned[model][i] for i in ids_of(fixture, section)} == {1}, model
        assert {owned[model][i] for i in ids_of(school_b_document(), section)} == {2}, model
    assert {owned["Device"][d] for d in device_ids(fixture)} == {1}
    assert owned["Room"][77] == 1 and owned["Student"][777] == 1
    assert tags[(1, b_tag)] == (777, None)
    assert tags[(2, b_tag)] == (B_ONLY_NAMED[2], None)
