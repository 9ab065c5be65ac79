"""A short-lived cache of staff rows, so thousands of stream connects cost few queries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session

from edge_bridge.models import Staff


class StaffCache:
    """`get(staff_id)` → Staff or None; entries live `ttl_seconds` (deletions show up then)."""

    def __init__(
        self,
        engine: Engine,
        *,
        ttl_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.ttl, self.clock = engine, ttl_seconds, clock
        self._entries: dict[int, tuple[float, Staff | None]] = {}
        self._lock = threading.Lock()

    def get(self, staff_id: int) -> Staff | None:
        now = self.clock()
        with self._lock:
            cached = self._entries.get(staff_id)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        with Session(self.engine, expire_on_commit=False) as session:
            staff = session.get(Staff, staff_id)
            if staff is not None:
                session.expunge(staff)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[staff_id] = (now, staff)
        return staff

    def forget(self, staff_id: int | None = None) -> None:
        with self._lock:
            if staff_id is None:
                self._entries.clear()
            else:
                self._entries.pop(staff_id, None)
