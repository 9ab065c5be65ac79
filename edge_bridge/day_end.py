"""End of day: visits still open at `DAY_END` (school local time) are closed, `auto_checkout`.

A forgotten check-out must never block the next day's check-in. At each day end every visit
that began before it is closed, with the day end as its exit time, its reason
`auto_checkout`, and a `student_checkout` event (`source: "automated"`) to the group's
supervisors and the child's home-group leaders. A bridge that was down at the day end
catches up when it starts: the cut-off is always the latest day end that has passed, so the
job is idempotent and running it twice closes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlmodel import col, select

from edge_bridge.events import Source
from edge_bridge.models import Student, Visit, utcnow
from edge_bridge.schoolday import latest_day_end, next_day_end
from edge_bridge.store import Store, Tx
from edge_bridge.visits import SYSTEM, ExitReason, close_visit

logger = logging.getLogger(__name__)


def close_day(tx: Tx, *, cutoff: datetime) -> list[int]:
    """Close every visit that began before `cutoff` at `cutoff`; returns the students' ids."""
    rows = tx.session.exec(
        select(Visit, Student)
        .join(Student, col(Student.id) == col(Visit.student_id))
        .where(col(Visit.exit_time).is_(None), col(Visit.entry_time) < cutoff)
        .order_by(col(Visit.entry_time), col(Visit.id))
    ).all()
    for visit, student in rows:
        close_visit(
            tx,
            visit,
            student,
            at=cutoff,
            source=Source.AUTOMATED,
            by=SYSTEM,
            reason=ExitReason.AUTO_CHECKOUT,
        )
    return [student.id for _, student in rows]


class DayEnd:
    """Runs `close_day` at every day end, and once at start for a day end that was missed."""

    def __init__(
        self,
        store: Store,
        *,
        tz: ZoneInfo,
        day_end: time,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.tz = tz
        self.day_end = day_end
        self.clock = clock
        self._sleep = sleep

    async def catch_up(self) -> list[int]:
        """Close what the latest day end should have closed (nothing when it ran)."""
        return await self.close(latest_day_end(self.clock(), tz=self.tz, day_end=self.day_end))

    async def close(self, cutoff: datetime) -> list[int]:
        """Close every visit begun before `cutoff`, at `cutoff`."""
        closed = await self.store.write(lambda tx: close_day(tx, cutoff=cutoff))
        if closed:
            logger.info(
                "Day end closed open visits reason=auto_checkout count=%d cutoff=%s",
                len(closed),
                cutoff.isoformat(),
            )
        return closed

    async def run(self) -> None:
        """Sleep until each day end, then close the day; never returns."""
        while True:
            now = self.clock()
            due = next_day_end(now, tz=self.tz, day_end=self.day_end)
            wait = max(0.0, (due - now).total_seconds())
            logger.info("Day end scheduled at=%s in_s=%.1f", due.isoformat(), wait)
            await self._sleep(wait)
            try:
                # The instant it was due, not the clock now: the loop's timer may wake a
                # hair early by the wall clock, and the day end must not slip to tomorrow.
                await self.close(due)
            except Exception:
                logger.exception("Day end failed; retrying at the next one")
