"""Ingest warnings are limited to one line per device and reason per window."""

from __future__ import annotations

import logging

import pytest

from edge_bridge.logthrottle import LogThrottle

LOGGER = logging.getLogger("test.logthrottle")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER.name]


def test_repeats_within_the_window_are_suppressed_and_counted_on_the_next_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    throttle = LogThrottle(LOGGER, window_seconds=60, clock=clock)

    with caplog.at_level(logging.WARNING):
        written = [throttle.warning(("r1", "not_json"), "Scan rejected device_id=%s", "r1")]
        for _ in range(5):
            clock.now += 10
            written.append(throttle.warning(("r1", "not_json"), "Scan rejected device_id=%s", "r1"))
        clock.now += 11  # 61 s after the first line
        written.append(throttle.warning(("r1", "not_json"), "Scan rejected device_id=%s", "r1"))

    assert written == [True, False, False, False, False, False, True]
    assert _lines(caplog) == [
        "Scan rejected device_id=r1",
        "Scan rejected device_id=r1 suppressed=5",
    ]


def test_each_device_and_reason_has_its_own_window(caplog: pytest.LogCaptureFixture) -> None:
    throttle = LogThrottle(LOGGER, window_seconds=60, clock=FakeClock())

    with caplog.at_level(logging.WARNING):
        throttle.warning(("r1", "not_json"), "a")
        throttle.warning(("r1", "bad_tag"), "b")
        throttle.warning(("r2", "not_json"), "c")
        throttle.warning(("r1", "not_json"), "d")

    assert _lines(caplog) == ["a", "b", "c"]


def test_a_flood_of_distinct_keys_keeps_the_state_bounded() -> None:
    clock = FakeClock()
    throttle = LogThrottle(LOGGER, window_seconds=60, max_keys=100, clock=clock)

    for index in range(1000):
        throttle.warning((f"device-{index}", "unknown_device"), "x")

    assert len(throttle._windows) <= 100
