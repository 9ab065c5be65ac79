""" "Meine OGS-Gruppe" (issue 8) in headless Chromium: a leader sees where each child is, live."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.integration.conftest import System
from tests.support.browser import login, save_screenshot

pytestmark = pytest.mark.browser

LIVE_MS = 1000  # issue 8: the badge follows a scan within 1 s
MAX, EMMA = "04A1B20000", "04A1B20001"  # students 401 and 402 of home group 7 "Klasse 2b"


def test_the_home_group_view_moves_a_childs_badge_within_a_second_of_each_scan(
    system: System, new_page: Callable[..., Page]
) -> None:
    page = new_page()
    login(page, system.base_url, "nowak@example.org", "nowak-demo-3")  # leads home group 7
    group = page.locator('[data-testid="ogs-group"][data-ogs-group-id="7"]')
    max_row = group.locator('[data-testid="ogs-student"][data-student-id="401"]')
    badge = max_row.get_by_test_id("ogs-badge")
    expect(group).to_contain_text("Klasse 2b")
    expect(group.get_by_test_id("ogs-student")).to_have_count(30)
    expect(badge).to_have_text("Abwesend")
    expect(group.get_by_test_id("ogs-present-count")).to_have_text("0")

    # Act: Max checks in at the Turnhalle, where Frau Nowak supervises nothing.
    system.reader("reader-turnhalle").scan(MAX)

    expect(badge).to_have_text("Turnhalle", timeout=LIVE_MS)
    expect(max_row).to_have_attribute("data-status", "present")
    expect(max_row).to_contain_text("seit ")
    expect(group.get_by_test_id("ogs-present-count")).to_have_text("1")

    # Act: Max moves to Raum 101; Emma arrives there too (for the screenshot).
    system.reader("reader-101").scan(MAX)

    expect(badge).to_have_text("Raum 101", timeout=LIVE_MS)
    system.reader("reader-101").scan(EMMA)
    expect(group.get_by_test_id("ogs-present-count")).to_have_text("2")
    save_screenshot(page, "home-group.png")

    # Act: Frau Schmidt ends her activity in Raum 101: both children are checked out.
    with system.http() as client:
        ended = client.post("/api/active/groups/124/end", headers=system.auth(1))
    assert ended.json()["student_ids"] == ["401", "402"]

    expect(badge).to_have_text("Abwesend", timeout=LIVE_MS)
    expect(max_row).to_have_attribute("data-status", "away")
    expect(group.get_by_test_id("ogs-present-count")).to_have_text("0")
