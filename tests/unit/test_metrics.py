"""edge_bridge/metrics.py: which instance a scrape came from, and the per-school series."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge_bridge.events import Event, EventType
from edge_bridge.metrics import Metrics, OpenVisitCounts

NOW = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def test_the_scrape_names_the_instance_in_an_info_series() -> None:
    metrics = Metrics(instance_id="bridge-b:8001")

    text = generate_latest(metrics.registry).decode()

    assert 'edge_instance_info{instance_id="bridge-b:8001"} 1.0' in text.splitlines()


# --- per school --------------------------------------------------------------------------------


def _samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _occupancy(event_id: int, school_id: int, **rooms: int) -> Event:
    data = {
        "rooms": [
            {"room_id": room.removeprefix("r"), "room_name": "Raum", "student_count": count}
            for room, count in rooms.items()
        ]
    }
    return Event(
        event_id, EventType.OCCUPANCY, None, data, NOW, route_admin=True, school_id=school_id
    )


def test_scans_are_counted_under_the_readers_school_and_the_label_is_only_its_id() -> None:
    metrics = Metrics()

    metrics.count_scans("checked_in", 1, 3)
    metrics.count_scans("unknown_tag", 2)

    samples = _samples(metrics)
    scans = {
        labels: value for (name, labels), value in samples.items() if name == "edge_scans_total"
    }
    assert scans == {
        frozenset({("result", "checked_in"), ("school", "1")}): 3,
        frozenset({("result", "unknown_tag"), ("school", "2")}): 1,
    }


def test_per_school_gauges_list_every_school_the_reader_names() -> None:
    metrics = Metrics()
    metrics.watch_schools(lambda: {"open_visits": {1: 4, 2: 0}, "clients": {1: 2, 2: 1}})

    samples = _samples(metrics)

    assert samples[("edge_open_visits", frozenset({("school", "1")}))] == 4
    assert samples[("edge_open_visits", frozenset({("school", "2")}))] == 0
    assert samples[("edge_sse_clients_by_school", frozenset({("school", "2")}))] == 1


def test_open_visit_counts_follow_occupancy_events_and_sum_per_school() -> None:
    counts = OpenVisitCounts()
    counts.seed([(1, 1, 2), (2, 1, 1), (21, 2, 0)])

    counts.observe(_occupancy(10, 1, r1=5))
    counts.observe(_occupancy(11, 2, r21=3))
    counts.observe(Event(12, EventType.STUDENT_CHECKIN, 124, {}, NOW, school_id=1))

    assert counts.by_school() == {1: 6, 2: 3}


def test_a_seed_read_after_an_event_keeps_the_events_count_for_that_room() -> None:
    counts = OpenVisitCounts()
    counts.observe(_occupancy(10, 1, r1=5))  # the feed delivered it while the seed was read

    counts.seed([(1, 1, 4), (2, 1, 1)])

    assert counts.by_school() == {1: 6}
