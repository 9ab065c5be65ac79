"""Play a `Plan` on a real broker: one `Reader` per device, scans at their planned times.

Scenario time runs `speed` times faster than the wall clock. Every scan's `ts` is its planned
read time; with `speed > 1` the whole afternoon is backdated so that it ends no later than
the real now (the bridge uses `ts` only within its skew: up to 5 s ahead, 24 h back), which
keeps the debounce spacing of the plan intact in `ts`.

A card's next scan is handed to its reader only after the previous one of that card has been
acknowledged (or after `gate_timeout_seconds`), so the bridge sees each card's scans in the
order they were read even when a reader sat offline with a full buffer. Double taps are the
exception: they follow their first tap at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from simulator.broker import BrokerConfig
from simulator.fleet import Fleet
from simulator.reader import Feedback, ReaderOptions
from simulator.report import AfternoonReport, build_report
from simulator.scenario import Plan, PlannedScan

logger = logging.getLogger(__name__)

_MAX_BACKDATE_SECONDS = 23 * 3600
_TICK_SECONDS = 0.05


class FeedbackSink(Protocol):
    """Whatever shows a reader's answer (the terminal display, or a test's list)."""

    def show_feedback(self, feedback: Feedback, scan: PlannedScan | None) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    """Wall-clock behaviour of a run; the plan decides everything else."""

    speed: float = 1.0
    connect_timeout_seconds: float = 10.0
    drain_timeout_seconds: float | None = None  # default: enough for every resend, plus 5 s
    gate_timeout_seconds: float | None = None  # default: same
    reader: ReaderOptions = field(default_factory=ReaderOptions)

    @property
    def patience_seconds(self) -> float:
        r = self.reader
        return r.resend_after_seconds * (r.max_resends + 1) + 5.0


class Afternoon:
    """One run of a plan. `fleet` is public so a test can cut a reader's connection."""

    def __init__(
        self,
        plan: Plan,
        broker: BrokerConfig,
        *,
        options: RunOptions | None = None,
        sink: FeedbackSink | None = None,
    ) -> None:
        self.plan = plan
        self.options = options or RunOptions()
        if self.options.speed <= 0:
            msg = f"speed must be positive, got: {self.options.speed}"
            raise ValueError(msg)
        if self._backdate_seconds() > _MAX_BACKDATE_SECONDS:
            msg = "duration / speed would backdate scans by more than 23 h; lower --speed"
            raise ValueError(msg)
        self._sink = sink
        self._feedback: queue.SimpleQueue[Feedback] = queue.SimpleQueue()
        self.fleet = Fleet(
            [d.id for d in plan.devices],
            broker,
            options=self.options.reader,
            on_feedback=self._feedback.put,
        )
        self._sent: dict[str, PlannedScan] = {}
        self._received: dict[str, Feedback] = {}
        self._last_of_subject: dict[str, str] = {}
        self._pairs: dict[str, str] = {}  # double tap's scan id → its first tap's scan id
        self.ts_origin: datetime | None = None

    def run(self, stop: threading.Event | None = None) -> AfternoonReport:
        """Play the whole plan, wait for outstanding feedback, and report."""
        stop = stop or threading.Event()
        scans = self.plan.scans
        logger.info(
            "Afternoon starting devices=%d scans=%d duration_seconds=%s speed=%s",
            len(self.plan.devices),
            len(scans),
            self.plan.options.duration_seconds,
            self.options.speed,
        )
        with self.fleet:
            if not self.fleet.wait_connected(self.options.connect_timeout_seconds):
                logger.warning("Starting with readers still offline; their scans are buffered")
            started = time.monotonic()
            ts_origin = datetime.now(UTC) - timedelta(seconds=self._backdate_seconds())
            self.ts_origin = ts_origin  # read time of `at_seconds == 0`, for the attendance check
            toggles = self._offline_toggles()
            next_index, due, due_since = 0, [], {}
            while (next_index < len(scans) or due) and not stop.is_set():
                now = (time.monotonic() - started) * self.options.speed
                while toggles and toggles[0][0] <= now:
                    _, device_id, online = toggles.pop(0)
                    self._toggle(device_id, online=online)
                while next_index < len(scans) and scans[next_index].at_seconds <= now:
                    due.append(next_index)
                    due_since[next_index] = time.monotonic()
                    next_index += 1
                due = self._dispatch_due(due, due_since, ts_origin)
                self._drain_feedback()
                stop.wait(_TICK_SECONDS)
            for _, device_id, online in toggles:
                if online:
                    self._toggle(device_id, online=True)
            self._wait_for_feedback(stop)
            elapsed = time.monotonic() - started
            stats = self.fleet.stats()
        self._drain_feedback()
        return build_report(
            self.plan,
            sent=self._sent,
            received=self._received,
            pairs=self._pairs,
            reader_stats=stats,
            elapsed_seconds=elapsed,
        )

    def _backdate_seconds(self) -> float:
        speed = self.options.speed
        return self.plan.options.duration_seconds * (1 - 1 / speed) if speed > 1 else 0.0

    def _offline_toggles(self) -> list[tuple[float, str, bool]]:
        toggles = [(w.start_seconds, w.device_id, False) for w in self.plan.offline]
        toggles += [(w.end_seconds, w.device_id, True) for w in self.plan.offline]
        return sorted(toggles, key=lambda t: (t[0], t[2]))

    def _toggle(self, device_id: str, *, online: bool) -> None:
        reader = self.fleet[device_id]
        if online:
            reader.go_online()
        else:
            reader.go_offline()

    def _dispatch_due(
        self, due: list[int], due_since: dict[int, float], ts_origin: datetime
    ) -> list[int]:
        """Hand due scans to their readers unless the card's previous scan is unanswered."""
        held: list[int] = []
        blocked: set[str] = set()
        gate = self.options.gate_timeout_seconds or self.options.patience_seconds
        for index in due:
            scan = self.plan.scans[index]
            previous = self._last_of_subject.get(scan.subject)
            waited = time.monotonic() - due_since[index]
            ready = scan.chained or previous is None or previous in self._received
            if scan.subject in blocked or not (ready or waited > gate):
                blocked.add(scan.subject)
                held.append(index)
                continue
            if not ready:
                logger.warning(
                    "Sending without the previous answer, result may differ subject=%s "
                    "device_id=%s waited_seconds=%.1f",
                    scan.subject,
                    scan.device_id,
                    waited,
                )
            scan_id = uuid.uuid4().hex
            if scan.chained and previous is not None:
                self._pairs[scan_id] = previous
            self._sent[scan_id] = scan
            self._last_of_subject[scan.subject] = scan_id
            ts = ts_origin + timedelta(seconds=scan.at_seconds)
            self.fleet[scan.device_id].scan(scan.tag, ts=ts, scan_id=scan_id)
        return held

    def _drain_feedback(self) -> None:
        while True:
            try:
                feedback = self._feedback.get_nowait()
            except queue.Empty:
                return
            self._received[feedback.scan_id] = feedback
            if self._sink is not None:
                self._sink.show_feedback(feedback, self._sent.get(feedback.scan_id))

    def _wait_for_feedback(self, stop: threading.Event) -> None:
        timeout = self.options.drain_timeout_seconds or self.options.patience_seconds
        deadline = time.monotonic() + timeout
        while not self.fleet.is_idle() and time.monotonic() < deadline and not stop.is_set():
            self._drain_feedback()
            stop.wait(_TICK_SECONDS)
        self._drain_feedback()


def run_afternoon(
    plan: Plan,
    broker: BrokerConfig,
    *,
    options: RunOptions | None = None,
    sink: FeedbackSink | None = None,
    stop: threading.Event | None = None,
) -> AfternoonReport:
    """Play `plan` on the broker and return the report (blocks for the whole afternoon)."""
    return Afternoon(plan, broker, options=options, sink=sink).run(stop)
