"""Prometheus metrics: one registry per running app, so tests can run several side by side.

Counters that live objects already keep (hub clients, subscribers) are read at scrape time
by a collector instead of being mirrored on every change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _LiveCollector(Collector):
    """Reads gauges and counters from live objects when Prometheus scrapes."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        values = self._read()
        for key, family, name, documentation in _LIVE:
            yield family(name, documentation, value=values.get(key, 0))


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
            "edge_scans", "Scans handled, by result", ["result"], registry=self.registry
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

    def watch(self, read: Callable[[], dict[str, float]]) -> None:
        """Register a reader of live values (hub stats, presence) for every scrape."""
        self.registry.register(_LiveCollector(read))
