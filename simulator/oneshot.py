"""One scan from the command line: connect, tap, wait for the answer, map it to an exit code."""

from __future__ import annotations

import logging
import queue
import time

from edge_bridge.wire import SUCCESS_RESULTS, ScanResult
from simulator.broker import BrokerConfig
from simulator.reader import Feedback, Reader, ReaderOptions

logger = logging.getLogger(__name__)

EXIT_SUCCESS = 0
EXIT_REFUSED = 1  # unknown_tag, no_active_group, rejected
EXIT_TIMEOUT = 2  # no feedback (or no connection) in time


def exit_code_for(result: ScanResult | None) -> int:
    """0 for success results (duplicate included), 1 for refusals, 2 when nothing came back."""
    if result is None:
        return EXIT_TIMEOUT
    return EXIT_SUCCESS if result in SUCCESS_RESULTS else EXIT_REFUSED


def send_one_scan(
    device_id: str,
    tag: str,
    broker: BrokerConfig,
    *,
    timeout_seconds: float = 10.0,
    options: ReaderOptions | None = None,
) -> Feedback | None:
    """Send one scan as `device_id` and return its feedback, or None after `timeout_seconds`
    (connecting included). The reader resends within the timeout like a real one."""
    answers: queue.SimpleQueue[Feedback] = queue.SimpleQueue()
    reader = Reader(device_id, broker, options=options, on_feedback=answers.put)
    deadline = time.monotonic() + timeout_seconds
    reader.start()
    try:
        if not reader.wait_connected(timeout_seconds):
            logger.warning(
                "No connection to the broker device_id=%s broker=%s:%d timeout_seconds=%g",
                device_id,
                broker.host,
                broker.port,
                timeout_seconds,
            )
            return None
        scan_id = reader.scan(tag)
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                feedback = answers.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                reader.resend_overdue()
                continue
            if feedback.scan_id == scan_id:
                return feedback
        return None
    finally:
        reader.stop()
