"""Browser fixtures: the integration system (real mosquitto + real bridge) and Chromium pages."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.integration.conftest import make_system, start_broker, system  # noqa: F401
from tests.support.browser import TABLET, UI_TIMEOUT_MS, launch_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per module; every test gets fresh contexts.

    Module scope on purpose: Playwright's sync API keeps an event loop running in the main
    thread while it is open, and `asyncio.run()` in any later test would refuse to start.
    """
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """`new_page(sse_options=None)` → a page in its own context (its own login).

    `sse_options` becomes `window.__sseOptions` before the dashboard loads (the test hook in
    api/static/app.js that shortens the reconnect backoff).
    """
    contexts = []

    def make(*, sse_options: dict[str, Any] | None = None) -> Page:
        context = browser.new_context(viewport=TABLET, locale="de-DE", timezone_id="Europe/Berlin")
        context.set_default_timeout(UI_TIMEOUT_MS)
        contexts.append(context)
        if sse_options is not None:
            context.add_init_script(f"window.__sseOptions = {json.dumps(sse_options)};")
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
