"""A running state's page in a real headless Chromium shows what the node streams, live, until the attempt ends."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from ..blackbox.helpers import claim_all, executed, node, register, trigger, upsert


def test_the_state_page_shows_the_stream_live_and_says_when_the_attempt_ended(
    dashboard: Page, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Writer": ((), ())})
    upsert(api, "writer", [node("writer", "Writer", namespace)])
    trigger(api, "writer")
    [held] = claim_all(api, "Writer", count=1)
    url, lease = f"/state/{held['state_id']}/stream", {"lease_id": held["lease_id"]}
    assert api.post(url, params={**lease, "offset": 0}, content=b'"Once upon "\n"a time"\n').status_code == 200

    dashboard.goto(f"/dashboard/ns/{namespace}/states/{held['state_id']}")
    stream = dashboard.locator("#live-stream")
    expect(stream).to_have_text("Once upon a time")  # what was streamed before the page opened
    expect(dashboard.locator("#stream-status")).to_have_text("live")

    # Markup in the text stays text.
    assert api.post(url, params={**lease, "offset": 2}, content=b'", <b>there</b> was"\n').status_code == 200
    expect(stream).to_have_text("Once upon a time, <b>there</b> was")  # pushed to the open page
    expect(stream.locator("b")).to_have_count(0)

    assert executed(api, held).status_code == 200
    expect(dashboard.locator("#stream-status")).to_have_text("attempt 1 ended (SUCCESS): 3 chunks")
    expect(stream).to_have_text("Once upon a time, <b>there</b> was")
