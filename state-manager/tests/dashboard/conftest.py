"""Browser fixtures: Debian's Chromium driven by Playwright (never `playwright install`: no downloads).

Chromium is installed with apt-get on first use when `/usr/bin/chromium` is missing (machines are
fresh each session); every test gets a new browser context, so cookies never leak between tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from exosphere_testing import CHROMIUM, CHROMIUM_ARGS, ServerProcess, ensure_chromium
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from ..blackbox.helpers import node, register, upsert

SECRET_VALUE = "s3cr3t-value-7f1d9c2b"
NODES = {"Split": (("text",), ("part",)), "Work": (("part",), ("out",)), "Join": (("x",), ("all",))}


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread while
# it lives, which would stop every later asyncio test of the suite.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    ensure_chromium()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser, server: ServerProcess) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def log_in(page: Page, key: str, path: str = "/dashboard/") -> None:
    page.goto(path)
    page.fill("#api-key", key)
    page.click("#login")
    page.wait_for_load_state()


@pytest.fixture
def dashboard(page: Page, server: ServerProcess) -> Page:
    """A page logged in to the dashboard."""
    log_in(page, server.api_key)
    assert page.url.endswith("/dashboard/"), page.url
    return page


@pytest.fixture
def pipeline(api: httpx.Client, namespace: str) -> str:
    """split fans out to work; join runs once everything under split is done. Errors are final (no retries)."""
    register(api, NODES)
    upsert(
        api,
        "pipeline",
        [
            node("split", "Split", namespace, {"text": "${{ store.text }}"}, ["work"]),
            node("work", "Work", namespace, {"part": "${{ split.outputs.part }}"}, ["join"]),
            node("join", "Join", namespace, {"x": "${{ store.text }}"}, unites="split", strategy="ALL_DONE"),
        ],
        secrets={"api_token": SECRET_VALUE},
        store_config={"required_keys": ["text"]},
        retry_policy={"max_retries": 0, "strategy": "FIXED", "backoff_factor": 1},
    )
    return "pipeline"
