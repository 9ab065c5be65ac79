"""The school's calendar: local days and day-end instants across time zones and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from edge_bridge.schoolday import day_bounds, latest_day_end, local_day, next_day_end

BERLIN = ZoneInfo("Europe/Berlin")
SIX_PM = time(18, 0)


def test_late_evening_utc_is_already_the_next_day_in_berlin() -> None:
    assert local_day(datetime(2026, 12, 2, 23, 30, tzinfo=UTC), BERLIN) == date(2026, 12, 3)


def test_a_local_day_spans_23_hours_on_the_spring_clock_change() -> None:
    start, end = day_bounds(date(2026, 3, 29), BERLIN)

    assert start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert end - start == timedelta(hours=23)


def test_the_latest_day_end_before_six_is_yesterdays() -> None:
    morning = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # 10:00 in Berlin

    assert latest_day_end(morning, tz=BERLIN, day_end=SIX_PM) == datetime(
        2026, 12, 1, 17, 0, tzinfo=UTC
    )


def test_the_next_day_end_after_six_is_tomorrows() -> None:
    evening = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)  # exactly 18:00 in Berlin

    assert latest_day_end(evening, tz=BERLIN, day_end=SIX_PM) == evening
    assert next_day_end(evening, tz=BERLIN, day_end=SIX_PM) == datetime(
        2026, 12, 3, 17, 0, tzinfo=UTC
    )
