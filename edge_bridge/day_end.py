"""End of day: visits still open at `DAY_END` (school local time) are closed, `auto_checkout`.

A forgotten check-out must never block the next day's check-in. At each day end every visit
that began before it is closed, with the day end as its exit time, its reason
`auto_checkout`, and a `student_checkout` event (`source: "automated"`) to the group's
supervisors and the child's home-group leaders.

Per school: `DAY_END` is a local time, so each school's day ends at `DAY_END` in its own
time zone (`School.timezone`, else SCHOOL_TIMEZONE), and only that school's visits close
then. The schools are re-read on every wake-up and at least every `RESCAN_SECONDS`, so a
school imported while the bridge runs gets its day end too. A bridge that was down at a day
end catches up when it starts: each school's cut-off is always its latest day end that has
passed, so the job is idempotent and running it twice closes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session, col, select

from edge_bridge.events import Source
from edge_bridge.models import ActiveGroup, School, Student, Visit, utcnow
from edge_bridge.schoolday import latest_day_end, next_day_end
from edge_bridge.store import Store, Tx
from edge_bridge.visits import SYSTEM, ExitReason, close_visit

logger = logging.getLogger(__name__)

# The longest the job sleeps before it reads the schools again (a school imported or given
# another time zone while the bridge runs). Reading them is one small query.
RESCAN_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class SchoolClock:
    """A school and the time zone its day ends in."""

    school_id: int
    tz: ZoneInfo


def close_day(tx: Tx, *, cutoff: datetime, school_id: int | None = None) -> list[int]:
    """Close every visit that began before `cutoff` at `cutoff`, of one school (or of all,
    for None); returns the students' ids."""
    query = (
        select(Visit, Student)
        .join(Student, col(Student.id) == col(Visit.student_id))
        .where(col(Visit.exit_time).is_(None), col(Visit.entry_time) < cutoff)
        .order_by(col(Visit.entry_time), col(Visit.id))
    )
    if school_id is not None:
        query = query.join(ActiveGroup, col(ActiveGroup.id) == col(Visit.active_group_id)).where(
            ActiveGroup.school_id == school_id
        )
    rows = tx.session.exec(query).all()
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


def school_clocks(session: Session, *, default: ZoneInfo) -> list[SchoolClock]:
    """Every school with its time zone; `default` (SCHOOL_TIMEZONE) where it names none or
    one this system does not know (logged)."""
    clocks = []
    for school_id, name in session.exec(select(School.id, School.timezone).order_by(School.id)):
        tz = default
        if name:
            try:
                tz = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                logger.warning(
                    "School time zone unknown, using SCHOOL_TIMEZONE school_id=%d timezone=%s",
                    school_id,
                    name,
                )
        clocks.append(SchoolClock(school_id, tz))
    return clocks


class DayEnd:
    """Closes each school's day at its day end, and at start a day end that was missed.

    `tz` is SCHOOL_TIMEZONE: the time zone of a school that names none.
    """

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
        self._closed: dict[int, datetime] = {}  # school id → the day end this job closed last

    async def schools(self) -> list[SchoolClock]:
        return await self.store.read(lambda session: school_clocks(session, default=self.tz))

    async def catch_up(self) -> dict[int, list[int]]:
        """Close what each school's latest day end should have closed (nothing when it ran);
        returns the students closed, per school that had any."""
        return await self._close_passed(await self.schools(), self.clock())

    async def close(self, cutoff: datetime, *, school_id: int) -> list[int]:
        """Close every visit of the school begun before `cutoff`, at `cutoff`."""
        closed = await self.store.write(
            lambda tx: close_day(tx, cutoff=cutoff, school_id=school_id)
        )
        self._closed[school_id] = cutoff
        if closed:
            logger.info(
                "Day end closed open visits reason=auto_checkout school_id=%d count=%d cutoff=%s",
                school_id,
                len(closed),
                cutoff.isoformat(),
            )
        return closed

    async def _close_passed(
        self, schools: list[SchoolClock], now: datetime
    ) -> dict[int, list[int]]:
        """For each school whose latest day end at `now` this job has not closed: close it."""
        closed: dict[int, list[int]] = {}
        for school in schools:
            cutoff = latest_day_end(now, tz=school.tz, day_end=self.day_end)
            if self._closed.get(school.school_id) == cutoff:
                continue
            students = await self.close(cutoff, school_id=school.school_id)
            if students:
                closed[school.school_id] = students
        return closed

    async def run(self) -> None:
        """Sleep until the next school's day end, then close every day that has ended; never
        returns. A failure is logged and retried at the next wake-up."""
        schools: list[SchoolClock] = []
        reached: datetime | None = None
        announced: datetime | None = None
        while True:
            now = self.clock()
            if reached is not None:
                # The day end slept towards, not the clock now: the loop's timer may wake a
                # hair early by the wall clock, and the day end must not slip to tomorrow.
                now = max(now, reached)
            try:
                schools = await self.schools()
                await self._close_passed(schools, now)
            except Exception:
                logger.exception("Day end failed; retrying at the next wake-up")
            due = min(
                (next_day_end(now, tz=school.tz, day_end=self.day_end) for school in schools),
                default=None,
            )
            wait = RESCAN_SECONDS if due is None else (due - now).total_seconds()
            reached = due if wait <= RESCAN_SECONDS else None
            if due is not None and due != announced:
                logger.info("Day end scheduled at=%s in_s=%.1f", due.isoformat(), wait)
                announced = due
            await self._sleep(max(0.0, min(wait, RESCAN_SECONDS)))
