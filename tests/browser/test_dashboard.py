"""The supervisor dashboard in headless Chromium against a real bridge and a real mosquitto.

Covers issue 6's browser scenarios: login, live scans, a manual check-in seen by a second
supervisor, and the connection indicator through a server restart and a lasting outage.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.integration.conftest import System
from tests.support.browser import (
    UI_TIMEOUT_MS,
    group_card,
    login,
    save_screenshot,
    student_row,
)

pytestmark = pytest.mark.browser

LIVE_MS = 1000  # issue 6: a scan shows up within 1 s
HOMEWORK = 124  # Frau Schmidt's group in Raum 101 (reader-101)
MAX, EMMA, LEON, MIA = "04A1B20000", "04A1B20001", "04A1B20002", "04A1B20003"  # 401…404
STAFF_NOWAK = "A1B2C3D6"


def _later(seconds: float) -> datetime:
    """A read time past the debounce window but within the accepted future skew."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_scan_shows_the_student_within_a_second_and_a_second_scan_removes_them(
    system: System, new_page: Callable[..., Page]
) -> None:
    page = new_page()
    reader = system.reader("reader-101")
    page.goto(system.base_url + "/")
    expect(page.get_by_test_id("login-submit")).to_have_text("Anmelden")
    save_screenshot(page, "login.png")
    login(page, system.base_url, "schmidt@example.org", "schmidt-demo-1")
    card = group_card(page, HOMEWORK)
    expect(card).to_contain_text("Hausaufgaben")
    expect(page.locator("#staff-name")).to_have_text("Frau Schmidt")
    expect(card.get_by_test_id("student-count")).to_have_text("0")

    # Act: Max taps his card.
    assert reader.scan(MAX)["result"] == "checked_in"

    expect(student_row(page, HOMEWORK, 401)).to_be_visible(timeout=LIVE_MS)
    expect(student_row(page, HOMEWORK, 401)).to_contain_text("Max Muster")
    expect(student_row(page, HOMEWORK, 401)).to_contain_text("seit ")
    expect(card.get_by_test_id("student-count")).to_have_text("1", timeout=LIVE_MS)

    # Act: more children arrive (for the screenshot), then Max taps again to leave.
    for tag in (EMMA, LEON, MIA):
        reader.scan(tag)
    expect(card.get_by_test_id("student-row")).to_have_count(4, timeout=UI_TIMEOUT_MS)
    save_screenshot(page, "dashboard.png")
    assert reader.scan(MAX, ts=_later(4))["result"] == "checked_out"

    expect(student_row(page, HOMEWORK, 401)).to_have_count(0, timeout=LIVE_MS)
    expect(card.get_by_test_id("student-count")).to_have_text("3", timeout=LIVE_MS)

    # Act: log out; the login form returns and the HttpOnly access cookie is gone.
    assert "access_token" in [cookie["name"] for cookie in page.context.cookies()]
    with page.expect_response("**/api/auth/logout") as logout:
        page.get_by_test_id("logout").click()

    assert logout.value.status == 204
    expect(page.get_by_test_id("login-email")).to_be_visible()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-status", "idle")
    assert "access_token" not in [cookie["name"] for cookie in page.context.cookies()]


def test_a_manual_check_in_on_one_page_shows_up_in_the_other_supervisors_browser(
    system: System, new_page: Callable[..., Page]
) -> None:
    reader = system.reader("reader-101")
    assert reader.scan(STAFF_NOWAK)["result"] == "supervisor_authenticated"  # 2nd supervisor
    schmidt, nowak = new_page(), new_page()
    login(schmidt, system.base_url, "schmidt@example.org", "schmidt-demo-1")
    login(nowak, system.base_url, "nowak@example.org", "nowak-demo-3")
    expect(group_card(nowak, HOMEWORK)).to_be_visible()

    # Act: Frau Schmidt searches for Emma and checks her in by hand.
    group_card(schmidt, HOMEWORK).get_by_test_id("checkin-search").fill("Emma Sch")
    schmidt.locator('[data-testid="checkin-result"][data-student-id="402"]').click()

    expect(student_row(schmidt, HOMEWORK, 402)).to_be_visible(timeout=LIVE_MS)
    expect(student_row(nowak, HOMEWORK, 402)).to_contain_text("Emma Schulz", timeout=LIVE_MS)
    expect(schmidt.get_by_test_id("toast")).to_contain_text("Emma Schulz angemeldet.")
    # Frau Nowak also leads Emma's home group: its badge follows.
    badge = nowak.locator('[data-testid="ogs-student"][data-student-id="402"]')
    expect(badge).to_have_attribute("data-status", "present", timeout=LIVE_MS)
    expect(badge.get_by_test_id("ogs-badge")).to_have_text("Raum 101")

    # Act: Frau Nowak checks Emma out again.
    student_row(nowak, HOMEWORK, 402).get_by_test_id("checkout-button").click()

    expect(student_row(schmidt, HOMEWORK, 402)).to_have_count(0, timeout=LIVE_MS)
    expect(badge).to_have_attribute("data-status", "away", timeout=LIVE_MS)


def test_the_indicator_turns_yellow_while_the_server_is_down_and_green_with_missed_scans(
    make_system: Callable[..., System], new_page: Callable[..., Page]
) -> None:
    system = make_system(persistence=False)  # the broker keeps the bridge's session meanwhile
    reader = system.reader("reader-101")
    page = new_page(sse_options={"baseDelayMs": 250, "maxAttempts": 10})
    login(page, system.base_url, "schmidt@example.org", "schmidt-demo-1")
    status = page.get_by_test_id("connection-status")
    reader.scan(EMMA)
    expect(student_row(page, HOMEWORK, 402)).to_be_visible(timeout=LIVE_MS)

    # Act: the bridge goes down; Max scans meanwhile; the bridge comes back on the same port.
    system.server.stop()
    expect(status).to_have_attribute("data-status", "reconnecting")
    expect(status).to_contain_text("Verbindung wird wiederhergestellt")
    scan_id = reader.send(MAX)
    expect(student_row(page, HOMEWORK, 401)).to_have_count(0)
    system.server.start(wait_ready=True)

    assert reader.wait_feedback(scan_id)["result"] == "checked_in"
    expect(status).to_have_attribute("data-status", "connected", timeout=UI_TIMEOUT_MS)
    expect(status).to_contain_text("Verbunden")
    expect(student_row(page, HOMEWORK, 401)).to_be_visible()
    expect(student_row(page, HOMEWORK, 402)).to_be_visible()
    expect(group_card(page, HOMEWORK).get_by_test_id("student-count")).to_have_text("2")


def test_a_server_that_stays_down_turns_the_indicator_red_after_the_fifth_attempt(
    system: System, new_page: Callable[..., Page]
) -> None:
    page = new_page(sse_options={"baseDelayMs": 100})  # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s
    stream_requests: list[str] = []
    page.on(
        "request",
        lambda request: (
            stream_requests.append(request.url) if "/api/sse/events" in request.url else None
        ),
    )
    login(page, system.base_url, "schmidt@example.org", "schmidt-demo-1")
    status = page.get_by_test_id("connection-status")
    retry = page.get_by_test_id("retry-button")
    expect(retry).to_be_hidden()

    # Act
    system.server.stop()

    expect(status).to_have_attribute("data-status", "failed", timeout=UI_TIMEOUT_MS)
    expect(status).to_contain_text("Verbindung fehlgeschlagen")
    expect(retry).to_be_visible()
    assert len(stream_requests) == 1 + 5  # the first connection, then five attempts

    # Act: the server is back; the retry button reconnects.
    system.server.start(wait_ready=True)
    retry.click()

    expect(status).to_have_attribute("data-status", "connected", timeout=UI_TIMEOUT_MS)
    expect(retry).to_be_hidden()
