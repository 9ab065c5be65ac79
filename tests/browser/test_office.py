"""The office view in headless Chromium: readers going offline and back, the occupancy chart
after a burst of scans, the attendance table, and no office for supervisors.

A screenshot of the office view goes to test-artifacts/office.png for review.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, Page, expect

from simulator.broker import BrokerConfig
from simulator.reader import Feedback, Reader, ReaderOptions
from tests.integration.conftest import System
from tests.support.browser import UI_TIMEOUT_MS, login, save_screenshot

pytestmark = pytest.mark.browser

OFFLINE_MS = 2000  # issue 15: an offline reader is shown red within 2 s of its Last Will
ADMIN = 4
TAGS = [f"04A1B2{n:04X}" for n in range(12)]  # students 401…412 (home group 7)


def _reader(system: System, device_id: str, answers: list[Feedback]) -> Reader:
    broker = BrokerConfig.from_url(
        system.broker.url("unused", "unused"),
        prefix=system.settings.mqtt_topic_prefix,
        credentials=system.passwords,
    )
    reader = Reader(
        device_id,
        broker,
        options=ReaderOptions(resend_after_seconds=1.0),
        on_feedback=answers.append,
    )
    reader.start()
    assert reader.wait_connected(10), "simulated reader did not connect"
    return reader


def _device_row(page: Page, device_id: str) -> Locator:
    return page.locator(f'[data-testid="device-row"][data-device-id="{device_id}"]')


def test_a_reader_that_loses_its_connection_turns_red_within_two_seconds_and_back(
    system: System, new_page: Callable[..., Page]
) -> None:
    answers: list[Feedback] = []
    reader = _reader(system, "reader-101", answers)
    page = new_page()
    login(page, system.base_url, "admin@example.org", "admin-demo-4")
    expect(page.locator("#office-view")).to_be_visible()
    row = _device_row(page, "reader-101")
    expect(row).to_have_attribute("data-online", "true", timeout=UI_TIMEOUT_MS)

    reader.go_offline()  # the broker publishes its Last Will

    expect(row).to_have_attribute("data-online", "false", timeout=OFFLINE_MS)
    expect(row.get_by_test_id("device-online")).to_have_text("offline")

    reader.go_online()

    expect(row).to_have_attribute("data-online", "true", timeout=OFFLINE_MS)
    reader.stop()


def test_the_occupancy_chart_ends_at_the_rooms_counts_after_a_burst_of_scans(
    system: System, new_page: Callable[..., Page]
) -> None:
    page = new_page()
    login(page, system.base_url, "admin@example.org", "admin-demo-4")
    expect(page.locator("#office-view")).to_be_visible()
    readers = {device: system.reader(device) for device in ("reader-101", "reader-turnhalle")}

    for index, tag in enumerate(TAGS):  # 8 children to Raum 101, 4 to the Turnhalle
        device = "reader-101" if index < 8 else "reader-turnhalle"
        assert readers[device].scan(tag)["result"] == "checked_in"

    with system.http() as http:
        rooms = http.get("/api/rooms", headers=system.auth(ADMIN)).json()
    counts = {room["id"]: room["student_count"] for room in rooms}
    assert counts == {"1": 8, "2": 4, "3": 0}
    for room_id, count in counts.items():
        line = page.locator(f'[data-testid="occupancy-line"][data-room-id="{room_id}"]')
        expect(line).to_have_attribute("data-counts", _ends_with(count), timeout=UI_TIMEOUT_MS)
        now = page.locator(f'[data-testid="occupancy-count"][data-room-id="{room_id}"]')
        expect(now).to_have_text(str(count))
    expect(page.get_by_test_id("attendance-row")).to_have_count(12, timeout=UI_TIMEOUT_MS)
    csv_link = page.locator("#attendance-csv")
    expect(csv_link).to_have_attribute("href", _contains("format=csv"))
    page.locator("#office-heading").scroll_into_view_if_needed()
    save_screenshot(page, "office.png")


def test_a_supervisor_sees_no_office_navigation(
    system: System, new_page: Callable[..., Page]
) -> None:
    page = new_page()

    login(page, system.base_url, "schmidt@example.org", "schmidt-demo-1")

    expect(page.locator("#office-nav")).to_be_hidden()
    expect(page.locator("#office-view")).to_be_hidden()


def _ends_with(count: int) -> re.Pattern[str]:
    return re.compile(rf"(^|,){count}$")


def _contains(text: str) -> re.Pattern[str]:
    return re.compile(re.escape(text))
