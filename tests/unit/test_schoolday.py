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


NEW_YORK = ZoneInfo("America/New_York")
# 03:00 UTC on 2 December: 04:00 on the 2nd in Berlin, still 22:00 on the 1st in New York.
BETWEEN_DAYS = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def test_one_instant_is_today_on_different_dates_for_schools_in_berlin_and_new_york() -> None:
    assert local_day(BETWEEN_DAYS, BERLIN) == date(2026, 12, 2)
    assert local_day(BETWEEN_DAYS, NEW_YORK) == date(2026, 12, 1)


def test_each_schools_today_has_bounds_of_its_own_midnight_that_hold_the_instant() -> None:
    berlin = day_bounds(local_day(BETWEEN_DAYS, BERLIN), BERLIN)
    new_york = day_bounds(local_day(BETWEEN_DAYS, NEW_YORK), NEW_YORK)

    assert berlin == (
        datetime(2026, 12, 1, 23, 0, tzinfo=UTC),
        datetime(2026, 12, 2, 23, 0, tzinfo=UTC),
    )
    assert new_york == (
        datetime(2026, 12, 1, 5, 0, tzinfo=UTC),
        datetime(2026, 12, 2, 5, 0, tzinfo=UTC),
    )
    assert all(start <= BETWEEN_DAYS < end for start, end in (berlin, new_york))
    # The same date names different instants: New York's 2 December has not begun yet.
    assert day_bounds(date(2026, 12, 2), NEW_YORK)[0] > BETWEEN_DAYS
