"""Prometheus metrics: one registry per running app, so tests can run several side by side.

Counters that live objects already keep (hub clients, subscribers) are read at scrape time
by a collector instead of being mirrored on every change.

Schools: a few series carry a `school` label, the school's id and nothing else (never a
name, tag or token): `edge_scans_total{result, school}` counts by the reader's school,
`edge_open_visits{school}` and `edge_sse_clients_by_school{school}` are read at scrape time.
Summed over `school` each gives the whole deployment's figure (for the streams:
`edge_sse_clients_connected`). A scan from an unknown device has no school and is not in
`edge_scans_total`: it is counted, unlabelled, in `edge_scan_rejections_total{reason=
"unknown_device"}`, like every other rejection reason (a payload's fault, not a school's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_bridge.events import Event, EventType

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# What `Metrics.watch_schools` readers return: metric key → school id → value.
SchoolValues = Mapping[str, Mapping[int, float]]


class _LiveCollector(Collector):
    """Reads gauges and counters from live objects when Prometheus scrapes."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        values = self._read()
        for key, family, name, documentation in _LIVE:
            yield family(name, documentation, value=values.get(key, 0))


class _SchoolCollector(Collector):
    """Reads per-school gauges from live objects when Prometheus scrapes."""

    def __init__(self, read: Callable[[], SchoolValues]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        values = self._read()
        for key, name, documentation in _PER_SCHOOL:
            family = GaugeMetricFamily(name, documentation, labels=["school"])
            for school_id, value in sorted(values.get(key, {}).items()):
                family.add_metric([str(school_id)], value)
            yield family


# key in the reader's dict, kind, metric name, help text
_LIVE: list[tuple[str, type[GaugeMetricFamily | CounterMetricFamily], str, str]] = [
    ("clients", GaugeMetricFamily, "edge_sse_clients_connected", "Open SSE streams"),
    (
        "slow_disconnects",
        CounterMetricFamily,
        "edge_sse_slow_disconnects",
        "Streams closed because the client fell behind",
    ),
    ("replays", CounterMetricFamily, "edge_sse_replays", "Reconnects served from the event log"),
    ("resyncs", CounterMetricFamily, "edge_sse_resyncs", "Reconnects told to refetch everything"),
    (
        "mqtt_connected",
        GaugeMetricFamily,
        "edge_mqtt_connected",
        "1 while the bridge is connected to the broker",
    ),
    (
        "readers_online",
        GaugeMetricFamily,
        "edge_readers_online",
        "Readers whose status says online",
    ),
]

# key in the per-school reader's dict, metric name, help text (all gauges, label `school`)
_PER_SCHOOL: list[tuple[str, str, str]] = [
    ("open_visits", "edge_open_visits", "Children checked in now (open visits), per school"),
    ("clients", "edge_sse_clients_by_school", "Open SSE streams of this process, per school"),
]


class OpenVisitCounts:
    """Children present per room, kept from the `occupancy` events; summed per school.

    Every commit that moves a child emits, per school, an `occupancy` event with the counts
    of the rooms it touched, and every instance's feed hands every such event over (the
    store on SQLite, the event-log tail on PostgreSQL). The counts are absolute, so they
    are right in every instance without a query at scrape time. `seed` fills in the rooms
    from the database at start; a room an event already set keeps the event's value (the
    feed delivers it in commit order, so it is the newer word on that room).
    """

    def __init__(self) -> None:
        self._rooms: dict[int, tuple[int, int]] = {}  # room id → (school id, children)
        self._from_events: set[int] = set()

    def seed(self, rooms: Iterable[tuple[int, int, int]]) -> None:
        """(room id, school id, children present) for every room, as read at start."""
        for room_id, school_id, present in rooms:
            if room_id not in self._from_events:
                self._rooms[room_id] = (school_id, present)

    def observe(self, event: Event) -> None:
        """Take the counts of an `occupancy` event; any other event changes nothing."""
        if event.type != EventType.OCCUPANCY or event.school_id is None:
            return
        for room in event.data.get("rooms", []):
            room_id = int(room["room_id"])
            self._rooms[room_id] = (event.school_id, int(room["student_count"]))
            self._from_events.add(room_id)

    def by_school(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for school_id, present in self._rooms.values():
            counts[school_id] = counts.get(school_id, 0) + present
        return counts


class Metrics:
    """The metrics the bridge updates as things happen.

    Which instance: `edge_instance_info{instance_id="<INSTANCE_ID>"} 1`, not a label on every
    series. Prometheus already gives every scraped series `instance` (the scrape target), and
    a scraped label of that name would be renamed `exported_instance`; join on the target
    instead: `edge_scans_total * on(instance) group_left(instance_id) edge_instance_info`.
    """

    def __init__(self, *, instance_id: str = "-") -> None:
        self.registry = CollectorRegistry()
        self.instance_info = Gauge(
            "edge_instance_info",
            "1, labelled with this process's INSTANCE_ID",
            ["instance_id"],
            registry=self.registry,
        )
        self.instance_info.labels(instance_id).set(1)
        self.events_broadcast = Counter(
            "edge_events_broadcast",
            "Events published to the hub",
            ["event_type"],
            registry=self.registry,
        )
        self.scans = Counter(
            "edge_scans",
            "Scans of known readers handled, by result and the reader's school",
            ["result", "school"],
            registry=self.registry,
        )
        self.scan_rejections = Counter(
            "edge_scan_rejections",
            "Scans refused before any effect, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.mqtt_dropped = Counter(
            "edge_mqtt_messages_dropped",
            "Messages not queued for the worker (left to the broker to redeliver), by reason",
            ["reason"],
            registry=self.registry,
        )
        self.scan_retries = Counter(
            "edge_scan_batch_retries",
            "Scan batches retried after a transient database error",
            registry=self.registry,
        )
        self.scan_clock_skew = Counter(
            "edge_scan_clock_skew",
            "Scans whose ts was outside the accepted skew (server time used)",
            registry=self.registry,
        )
        self.scan_to_broadcast = Histogram(
            "edge_scan_to_broadcast_seconds",
            "From a scan's arrival at the bridge to its events being handed to the hub",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "edge_scan_batch_size",
            "Scans committed per transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=self.registry,
        )

    def count_scans(self, result: str, school_id: int, count: int = 1) -> None:
        """`count` scans at a reader of `school_id` ended with `result`."""
        self.scans.labels(result, str(school_id)).inc(count)

    def watch(self, read: Callable[[], dict[str, float]]) -> None:
        """Register a reader of live values (hub stats, presence) for every scrape."""
        self.registry.register(_LiveCollector(read))

    def watch_schools(self, read: Callable[[], SchoolValues]) -> None:
        """Register a reader of per-school live values (`open_visits`, `clients`)."""
        self.registry.register(_SchoolCollector(read))
