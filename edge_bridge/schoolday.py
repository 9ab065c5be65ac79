"""The school's calendar: local days and day-end instants, in the school's time zone.

Pure time arithmetic (no database): "today", a day's UTC bounds for queries, and the
`DAY_END` instants around a moment. Daylight saving is the time zone's business: a local
day can be 23 or 25 hours long.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    """The calendar day `moment` falls on in the school's time zone."""
    return moment.astimezone(tz).date()


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants where the school's local `day` begins and the next one begins."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def latest_day_end(now: datetime, *, tz: ZoneInfo, day_end: time) -> datetime:
    """The most recent day end at or before `now`, in UTC."""
    today = local_day(now, tz)
    candidate = datetime.combine(today, day_end, tzinfo=tz)
    if candidate > now:
        candidate = datetime.combine(today - timedelta(days=1), day_end, tzinfo=tz)
    return candidate.astimezone(UTC)


def next_day_end(now: datetime, *, tz: ZoneInfo, day_end: time) -> datetime:
    """The first day end after `now`, in UTC."""
    today = local_day(now, tz)
    candidate = datetime.combine(today, day_end, tzinfo=tz)
    if candidate <= now:
        candidate = datetime.combine(today + timedelta(days=1), day_end, tzinfo=tz)
    return candidate.astimezone(UTC)
