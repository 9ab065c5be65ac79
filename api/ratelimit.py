"""Login rate limiting: a sliding window per key (email, client address), in memory.

Not thread-safe on purpose: the login route checks and counts on the event loop, where
nothing runs in between, so a burst of parallel attempts cannot slip past the limit.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most `limit` hits per key in any `window_seconds`; memory bounded by `max_keys`."""

    def __init__(
        self,
        *,
        limit: int,
        window_seconds: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            msg = f"limit and window must be positive, got: {limit}, {window_seconds}"
            raise ValueError(msg)
        self.limit, self.window, self.max_keys, self.clock = limit, window_seconds, max_keys, clock
        self._hits: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        hits = self._hits.get(key)
        if hits is None:
            return 0.0
        self._expire(hits)
        if len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[0] + self.window - self.clock())

    def hit(self, key: str) -> None:
        """Count one attempt for `key` (the most recently hit keys are kept longest)."""
        hits = self._hits.pop(key, None) or deque()
        self._expire(hits)
        hits.append(self.clock())
        self._hits[key] = hits
        if len(self._hits) > self.max_keys:
            self._evict()

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    def __len__(self) -> int:
        return len(self._hits)

    def _expire(self, hits: deque[float]) -> None:
        cutoff = self.clock() - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()

    def _evict(self) -> None:
        """Drop keys without recent hits, then the least recently hit ones down to 90 %."""
        for key, hits in list(self._hits.items()):
            self._expire(hits)
            if not hits:
                del self._hits[key]
        keep = self.max_keys * 9 // 10  # headroom, so a spray of new keys does not rescan
        while len(self._hits) > keep:
            del self._hits[next(iter(self._hits))]
