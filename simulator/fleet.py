"""Many readers at once: start them, keep their resend timers ticking, wait for feedback, stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from simulator.broker import BrokerConfig
from simulator.reader import Feedback, Reader, ReaderOptions, ReaderStats

logger = logging.getLogger(__name__)

_TICK_SECONDS = 0.1


class Fleet:
    """A set of `Reader`s sharing one broker config and one resend thread.

    Use as a context manager; `on_feedback` is called from paho's network threads.
    """

    def __init__(
        self,
        device_ids: Iterable[str],
        broker: BrokerConfig,
        *,
        options: ReaderOptions | None = None,
        on_feedback: Callable[[Feedback], None] | None = None,
    ) -> None:
        self.readers: dict[str, Reader] = {
            device_id: Reader(device_id, broker, options=options, on_feedback=on_feedback)
            for device_id in device_ids
        }
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __getitem__(self, device_id: str) -> Reader:
        return self.readers[device_id]

    def start(self) -> None:
        for reader in self.readers.values():
            reader.start()
        self._ticker = threading.Thread(target=self._tick, name="sim-resend", daemon=True)
        self._ticker.start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until every reader is connected; False if some are not after `timeout`."""
        deadline = time.monotonic() + timeout
        for reader in self.readers.values():
            if not reader.wait_connected(max(0.0, deadline - time.monotonic())):
                logger.warning("Reader not connected yet device_id=%s", reader.device_id)
                return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no reader has an unacknowledged scan; False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.is_idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def is_idle(self) -> bool:
        return all(not r.unacknowledged() for r in self.readers.values())

    def stats(self) -> dict[str, ReaderStats]:
        return {device_id: r.stats() for device_id, r in self.readers.items()}

    def stop(self, *, timeout: float = 2.0) -> None:
        """Switch every reader off; waiting for their goodbyes takes `timeout` at most in all."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=timeout)
        for reader in self.readers.values():
            reader.expect_stop()
        deadline = time.monotonic() + timeout
        for reader in self.readers.values():
            reader.stop(timeout=max(0.0, deadline - time.monotonic()))

    def _tick(self) -> None:
        while not self._stop.wait(_TICK_SECONDS):
            for reader in self.readers.values():
                reader.resend_overdue()
