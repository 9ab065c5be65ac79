"""Headless Debian Chromium for browser tests, and the dashboard steps they share.

Never a downloaded browser: Playwright drives `/usr/bin/chromium` through `executable_path`.
Screenshots go to `test-artifacts/` (gitignored) at the top of the repository.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, Playwright, expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TABLET = {"width": 1180, "height": 820}  # a 10-11" tablet in landscape
UI_TIMEOUT_MS = 10_000  # page loads, logins, reconnects; live updates use tighter bounds


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def login(page: Page, base_url: str, email: str, password: str) -> None:
    """Open the dashboard, sign in, and wait for the live connection."""
    page.goto(base_url + "/")
    page.get_by_test_id("login-email").fill(email)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-status", "connected", timeout=UI_TIMEOUT_MS
    )


def group_card(page: Page, group_id: int | str) -> Locator:
    return page.locator(f'[data-testid="group-card"][data-group-id="{group_id}"]')


def student_row(page: Page, group_id: int | str, student_id: int | str) -> Locator:
    return group_card(page, group_id).locator(
        f'[data-testid="student-row"][data-student-id="{student_id}"]'
    )


def save_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
