"""A state with a large payload, in a real headless Chromium: its page shows the size and a link, never the
text, and the link loads the text whole."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from ..blackbox.helpers import by_identifier, node, register, states, trigger, upsert

BIG = "line of a long report\n" * 10_000  # 220,000 bytes: over the 64 KiB threshold


def test_a_large_input_shows_its_size_and_a_link_that_loads_it(
    dashboard: Page, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Read": (("report", "title"), ("summary",))})
    upsert(api, "read", [node("read", "Read", namespace, {"report": "x", "title": "x"})])
    run_id = trigger(api, "read", inputs={"report": BIG, "title": "Q3"})
    [state] = by_identifier(states(api, run_id), "read")

    dashboard.goto(f"/dashboard/ns/{namespace}/states/{state['state_id']}")
    expect(dashboard.locator("#state-inputs")).to_contain_text('"title": "Q3"')
    expect(dashboard.locator("#state-inputs")).not_to_contain_text("line of a long report")
    expect(dashboard.locator("#large-inputs-report")).to_contain_text("report: 220.0 kB, kept apart")
    assert len(dashboard.content()) < 64 * 1024  # the page does not carry the payload

    dashboard.click("#large-inputs-report a")
    dashboard.wait_for_url(f"**/states/{state['state_id']}/payload/inputs/report")
    assert dashboard.locator("body").inner_text() == BIG

    missing = dashboard.goto(f"/dashboard/ns/{namespace}/states/{state['state_id']}/payload/outputs/summary")
    assert missing is not None and missing.status == 404
