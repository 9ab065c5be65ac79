"""Rate-limited warnings: one line per key (device and reason) per window.

A reader sending garbage in a loop must not flood the log. The first warning for a key is
written; further ones inside the window are counted, and the next line written for that key
says how many were suppressed. Used from paho's network thread and from the event loop, so
the state is guarded by a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_bridge.tuning import INGEST_LOG_MAX_KEYS, INGEST_LOG_WINDOW_SECONDS


@dataclass(slots=True)
class _Window:
    started: float
    suppressed: int = 0


class LogThrottle:
    """`warning(key, msg, *args)` logs at most once per key per window."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        window_seconds: float = INGEST_LOG_WINDOW_SECONDS,
        max_keys: int = INGEST_LOG_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._windows: dict[tuple[str, ...], _Window] = {}
        self._lock = threading.Lock()

    def warning(
        self,
        key: tuple[str, ...],
        msg: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log `msg % args` unless `key` logged within the window; True when written."""
        suppressed = self._admit(key)
        if suppressed is None:
            return False
        if suppressed:
            self.logger.warning(msg + " suppressed=%d", *args, suppressed, exc_info=exc_info)
        else:
            self.logger.warning(msg, *args, exc_info=exc_info)
        return True

    def _admit(self, key: tuple[str, ...]) -> int | None:
        """None to suppress, else how many lines were suppressed since the last one."""
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.started < self.window_seconds:
                window.suppressed += 1
                return None
            if window is None and len(self._windows) >= self.max_keys:
                self._forget_expired(now)
            self._windows[key] = _Window(now)
            return window.suppressed if window is not None else 0

    def _forget_expired(self, now: float) -> None:
        expired = [k for k, w in self._windows.items() if now - w.started >= self.window_seconds]
        for key in expired:
            del self._windows[key]
        if len(self._windows) >= self.max_keys:  # a flood of distinct keys: start over
            self._windows.clear()
