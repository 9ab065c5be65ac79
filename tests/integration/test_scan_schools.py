"""Two schools on one bridge: a scan is judged in its reader's school, events stay there, and
`/metrics` counts it there.

School 1 is the fixture school, school 2 "Schule Nord" (tests/support/scan_nord.py): a tag
value both use, and one only school 2 knows.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, col, func, select

from edge_bridge.models import EventRecord, Visit
from tests.factories import VISIT_EVENT_TYPES, open_groups, school_document
from tests.integration.conftest import System
from tests.support.scan_nord import (
    NORD_GROUP,
    NORD_ONLY_TAG,
    NORD_READER,
    NORD_SCHOOL_ID,
    NORD_SUPERVISOR,
    SHARED_TAG,
    nord_document,
)
from tests.support.sse import SseStream

pytestmark = pytest.mark.integration

SCHMIDT = 1  # school 1: supervises 124 (Raum 101, reader-101)
HOMEWORK = 124
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def system(make_system: Callable[..., System]) -> System:
    return make_system(documents=[nord_document()])


def _nord_stream(system: System) -> SseStream:
    """Frau Nordlicht's stream (school 2, supervises 223), past its `connected` frame."""
    stream = system.stream(token=system.token(NORD_SUPERVISOR, school_id=NORD_SCHOOL_ID))
    assert stream.status_code == 200, stream.body
    assert stream.next_event().event == "connected"
    return stream


def _visit_events(system: System) -> int:
    with Session(system.engine) as session:
        return session.exec(
            select(func.count())
            .select_from(EventRecord)
            .where(col(EventRecord.type).in_(VISIT_EVENT_TYPES))
        ).one()


def test_a_tag_known_only_in_school_2_is_unknown_at_a_school_1_reader_and_names_no_one(
    system: System,
) -> None:
    school_1 = system.connected_stream(SCHMIDT)
    school_2 = _nord_stream(system)

    feedback = system.reader("reader-101").scan(NORD_ONLY_TAG)
    events_after = _visit_events(system)
    system.reader("reader-101").scan(SHARED_TAG)  # Max Muster (401), school 1
    system.reader(NORD_READER).scan(SHARED_TAG)  # Lina Berg (501), school 2

    assert (feedback["result"], feedback["message"]) == ("unknown_tag", "Karte unbekannt")
    assert "student_name" not in feedback
    assert "Ole" not in json.dumps(feedback) and "Strand" not in json.dumps(feedback)
    assert events_after == 0
    assert open_groups(system.engine, 502) == []
    # Each stream's first event is the later scan in its own school: nothing came before.
    first_1, first_2 = school_1.next_event(), school_2.next_event()
    assert (first_1.event, first_1.json["data"]["student_id"]) == ("student_checkin", "401")
    assert (first_2.event, first_2.json["data"]["student_id"]) == ("student_checkin", "501")


def test_a_tag_both_schools_use_checks_in_each_readers_own_student(system: System) -> None:
    school_1 = system.connected_stream(SCHMIDT)
    school_2 = _nord_stream(system)

    at_nord = system.reader(NORD_READER).scan(SHARED_TAG)
    at_101 = system.reader("reader-101").scan(SHARED_TAG)
    heard_1, heard_2 = school_1.next_event(), school_2.next_event()

    assert (at_nord["result"], at_nord["student_name"]) == ("checked_in", "Lina Berg")
    assert (at_101["result"], at_101["student_name"]) == ("checked_in", "Max Muster")
    assert open_groups(system.engine, 501) == [NORD_GROUP]
    assert open_groups(system.engine, 401) == [HOMEWORK]  # a check-in, not a transfer
    assert (heard_1.json["active_group_id"], heard_1.json["data"]["student_name"]) == (
        str(HOMEWORK),
        "Max Muster",
    )
    assert (heard_2.json["active_group_id"], heard_2.json["data"]["student_name"]) == (
        str(NORD_GROUP),
        "Lina Berg",
    )


# --- /metrics per school -----------------------------------------------------------------------


def _scrape(system: System) -> Samples:
    with system.http() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """`name`'s samples summed per value of `label`."""
    sums: Counter[str] = Counter()
    for (sample, labels), value in samples.items():
        if sample == name:
            sums[dict(labels)[label]] += value
    return dict(sums)


def _scans(samples: Samples, school: str) -> dict[str, float]:
    """edge_scans_total of one school, by result."""
    return {
        dict(labels)["result"]: value
        for (name, labels), value in samples.items()
        if name == "edge_scans_total" and dict(labels)["school"] == school
    }


def _open_visits_in_db(system: System) -> int:
    with Session(system.engine) as session:
        return session.exec(
            select(func.count()).select_from(Visit).where(col(Visit.exit_time).is_(None))
        ).one()


def _eventually(system: System, check: Callable[[Samples], bool]) -> Samples:
    """Scrape until `check` accepts (on PostgreSQL open visits follow the event-log tail)."""
    deadline = time.monotonic() + 10
    while True:
        samples = _scrape(system)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_a_scan_burst_at_a_school_1_reader_counts_under_school_1_and_the_schools_add_up(
    system: System,
) -> None:
    system.reader(NORD_READER).scan(SHARED_TAG)  # one child present in school 2 beforehand
    answered = 1
    for staff_id in (SCHMIDT, 3):  # two open streams in school 1, one in school 2
        system.connected_stream(staff_id)
    _nord_stream(system)
    before = _scrape(system)
    reader = system.reader("reader-101")
    tags = [student["tag"] for student in school_document()["students"][:20]]
    tags += [NORD_ONLY_TAG, "DEADBEEF00", "DEADBEEF01", "DEADBEEF02", "DEADBEEF03"]

    scan_ids = [reader.send(tag) for tag in tags]
    results = Counter(reader.wait_feedback(scan_id)["result"] for scan_id in scan_ids)
    answered += sum(results.values())
    after = _eventually(system, lambda s: _by_label(s, "edge_open_visits", "school").get("1") == 20)

    assert results == {"checked_in": 20, "unknown_tag": 5}
    school_1 = _scans(after, "1")
    earlier_1 = _scans(before, "1")
    assert {r: school_1[r] - earlier_1.get(r, 0) for r in school_1} == {
        "checked_in": 20,
        "unknown_tag": 5,
    }
    assert _scans(after, "2") == _scans(before, "2") == {"checked_in": 1}
    assert sum(_by_label(after, "edge_scans_total", "school").values()) == answered == 26
    open_visits = _by_label(after, "edge_open_visits", "school")
    assert open_visits == {"1": 20, "2": 1}
    assert sum(open_visits.values()) == _open_visits_in_db(system)
    clients = _by_label(after, "edge_sse_clients_by_school", "school")
    assert clients == {"1": 2, "2": 1}
    assert sum(clients.values()) == after[("edge_sse_clients_connected", frozenset())]
