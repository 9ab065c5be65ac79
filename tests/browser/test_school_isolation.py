"""The dashboard of one school's admin in headless Chromium shows nothing of another school
(issue 13), while that other school's readers come online and scan.

The two schools (tests/support/schools.py) share room, group and child names; what would
betray a leak is a name only school B has, a B device id or a B-only id anywhere in the
page: in its text (hidden views and select options included) or in an attribute
(`data-room-id`, `data-device-id`, an option's value, …). A's own check-in, made after all
of B's scans, is the sentinel: once the page shows it, anything of B would be there too.

A screenshot goes to test-artifacts/school-isolation.png for review.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from edge_bridge.wire import Topics
from tests.integration.conftest import System
from tests.support.browser import UI_TIMEOUT_MS, login, save_screenshot
from tests.support.reader import TestReader
from tests.support.schools import (
    SCHOOL_A,
    Markers,
    display_name,
    leak_markers,
    school_a_document,
    school_b_document,
    tag_of,
    two_schools,
)

pytestmark = pytest.mark.browser

# Every text node's content and every attribute of the page, hidden parts included.
PAGE_CONTENT_JS = """() => ({
  text: document.body.textContent,
  attributes: Array.from(document.querySelectorAll('*')).flatMap((el) =>
    Array.from(el.attributes).map((a) => [el.tagName.toLowerCase(), a.name, a.value])),
})"""
_ID_ATTRIBUTE = re.compile(r"^data-[a-z-]*id$")


def _page_leaks(content: dict[str, Any], markers: Markers) -> list[str]:
    """Each B-only text in the page, and each B-only id in an id attribute or option value."""
    found = [f"text {text!r}" for text in sorted(markers.texts) if text in content["text"]]
    for tag, name, value in content["attributes"]:
        found += [f"<{tag} {name}={value!r}>" for text in markers.texts if text in value]
        is_id = _ID_ATTRIBUTE.match(name) or (tag == "option" and name == "value")
        if is_id and value in markers.ids:
            found.append(f"<{tag} {name}={value!r}>: id of school B")
    return found


def _go_online(system: System, device_id: str) -> TestReader:
    """The reader, connected, after publishing its retained `online` status (one connection
    per device: a second one with the same client id would take the first one's place)."""
    reader = system.reader(device_id)
    topic = Topics(system.settings.mqtt_topic_prefix).status(device_id)
    published = reader.client.publish(topic, json.dumps({"online": True}), qos=1, retain=True)
    published.wait_for_publish(5)
    return reader


def test_school_a_admins_dashboard_shows_none_of_school_b_while_b_scans_and_shows_a_checkin(
    make_system: Callable[..., System], new_page: Callable[..., Page]
) -> None:
    # Arrange: both schools; B's readers online, B's children (names only B has) present.
    system = make_system(documents=two_schools())
    a_doc, b_doc = school_a_document(), school_b_document()
    b_markers = leak_markers([a_doc], [b_doc])
    nord, nord_gym = _go_online(system, "nord-101"), _go_online(system, "nord-turnhalle")
    assert nord.scan(tag_of(b_doc, 522))["result"] == "checked_in"  # Yara Quistorp
    assert nord_gym.scan(tag_of(b_doc, 524))["result"] == "checked_in"  # Ottokar Nordin
    page = new_page()
    login(page, system.base_url, SCHOOL_A.admin_email, SCHOOL_A.admin_password)
    expect(page.locator("#office-view")).to_be_visible()
    for select in ("start-activity-room", "attendance-room"):  # the rooms list has loaded
        option = page.get_by_test_id(select).locator("option", has_text="Bibliothek")
        expect(option).to_have_count(1, timeout=UI_TIMEOUT_MS)

    # Act: more of B live (a child with a B-only name), then A's own check-in.
    assert nord.scan(tag_of(b_doc, 528))["result"] == "checked_in"  # Juri Vogelsang
    feedback = system.reader("reader-101").scan(tag_of(a_doc, 401))

    # Assert: A's check-in shows (attendance row, occupancy of room 1) …
    assert feedback["result"] == "checked_in"
    row = page.locator('[data-testid="attendance-row"][data-student-id="401"]')
    expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(row).to_contain_text(display_name(a_doc, 401))
    count = page.locator('[data-testid="occupancy-count"][data-room-id="1"]')
    expect(count).to_have_text("1", timeout=UI_TIMEOUT_MS)
    expect(page.locator('[data-testid="device-row"][data-device-id="reader-101"]')).to_be_visible()
    # … and nothing of B anywhere in the page.
    page.locator("#office-heading").scroll_into_view_if_needed()
    save_screenshot(page, "school-isolation.png")
    assert _page_leaks(page.evaluate(PAGE_CONTENT_JS), b_markers) == []
