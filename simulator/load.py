"""A load generator for benchmarks: many readers, a fixed number of scans, latency statistics.

Results are not checked (a random stream of taps is full of duplicates); only that every scan
is answered and how long it took from its first publish to its feedback.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from simulator.broker import BrokerConfig
from simulator.data import SimData
from simulator.fleet import Fleet
from simulator.reader import Feedback, ReaderOptions
from simulator.report import latency_summary_ms

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    """How much load, how fast; `rate` 0 means as fast as possible."""

    devices: int = 10
    rate: float = 0.0
    count: int = 1000
    seed: int = 0
    timeout_seconds: float = 60.0
    connect_timeout_seconds: float = 10.0


class _Collector:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.results: Counter[str] = Counter()
        self.last_at = 0.0

    def __call__(self, feedback: Feedback) -> None:
        # paho-mqtt calls this from the readers' network threads.
        with self.lock:
            if feedback.latency_seconds is not None:
                self.latencies.append(feedback.latency_seconds)
            self.results[str(feedback.result)] += 1
            self.last_at = time.monotonic()


def run_load(
    data: SimData,
    broker: BrokerConfig,
    options: LoadOptions,
    *,
    reader_options: ReaderOptions | None = None,
) -> dict[str, Any]:
    """Publish `options.count` scans over `options.devices` readers; return JSON-ready stats."""
    devices = [d.id for d in data.devices if d.active][: options.devices]
    if not devices:
        msg = "no active devices in the data"
        raise ValueError(msg)
    rng = random.Random(options.seed)
    tags = [c.tag for c in (*data.students, *data.staff)] or [
        "".join(rng.choice("0123456789ABCDEF") for _ in range(10)) for _ in range(100)
    ]
    collector = _Collector()
    with Fleet(devices, broker, options=reader_options, on_feedback=collector) as fleet:
        if not fleet.wait_connected(options.connect_timeout_seconds):
            logger.warning("Load starting with readers still offline")
        started = time.monotonic()
        for i in range(options.count):
            if options.rate > 0:
                delay = started + i / options.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            fleet[devices[i % len(devices)]].scan(rng.choice(tags))
        published = time.monotonic() - started
        idle = fleet.wait_idle(options.timeout_seconds)
        stats = fleet.stats()
    with collector.lock:
        acked = sum(collector.results.values())
        elapsed = max((collector.last_at or time.monotonic()) - started, 1e-9)
        latencies = sorted(collector.latencies)
        results = dict(collector.results)
    if not idle:
        logger.warning("Load ended with unanswered scans unacknowledged=%d", options.count - acked)
    return {
        "devices": len(devices),
        "sent": options.count,
        "acked": acked,
        "unacknowledged": sum(s.pending + s.buffered for s in stats.values()),
        "resends": sum(s.resends for s in stats.values()),
        "publish_seconds": round(published, 3),
        "elapsed_seconds": round(elapsed, 3),
        "scans_per_second": round(acked / elapsed, 1),
        "latency_ms": latency_summary_ms(latencies),
        "by_result": results,
    }
