"""A waiting state's page in a real headless Chromium: what it waits for, and the form that sends the signal."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from ..blackbox.helpers import claim_all, node, register, run, trigger, upsert


def test_a_waiting_state_shows_its_signal_and_the_form_wakes_it_with_the_payload(
    dashboard: Page, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Approve": (("item",), ("approved",))})
    graph = [node("approve", "Approve", namespace, {"item": "${{ store.item }}"})]
    upsert(api, "approve", graph, store_config={"required_keys": ["item"]})
    run_id = trigger(api, "approve", store={"item": "invoice-7"})
    [held] = claim_all(api, "Approve", count=1)
    body = {"name": "approval", "timeout_seconds": 86_400, "lease_id": held["lease_id"]}
    waited = api.post(f"/state/{held['state_id']}/wait-for-signal", json=body)
    assert waited.status_code == 200, waited.text

    dashboard.goto(f"/dashboard/ns/{namespace}/states/{held['state_id']}")
    expect(dashboard.locator("#state-status")).to_have_text("WAITING")
    expect(dashboard.locator("#waiting-for")).to_have_text("approval")
    expect(dashboard.locator("#wait-timeout")).not_to_be_empty()

    # A line without `=` is refused by the page, and nothing is sent.
    dashboard.fill("#signal-payload", "approved")
    dashboard.click("#send-signal")
    expect(dashboard.locator("#signal-result")).to_contain_text("Each line must be KEY=VALUE")
    expect(dashboard.locator("#state-status")).to_have_text("WAITING")

    dashboard.fill("#signal-payload", "approved=yes\nby=ada = admin")
    dashboard.click("#send-signal")
    expect(dashboard.locator("#signal-result")).to_have_text("Signal approval sent: 1 waiting state woken")
    expect(dashboard.locator("#state-status")).to_have_text("CREATED")
    expect(dashboard.locator("#send-signal")).to_be_disabled()

    [again] = claim_all(api, "Approve", count=1)
    assert again["state_id"] == held["state_id"]
    assert again["signal"] == {"approved": "yes", "by": "ada = admin"}
    assert run(api, run_id)["status"] == "PENDING"
    dashboard.reload()
    expect(dashboard.locator("#state-signal")).to_contain_text('"by": "ada = admin"')
    expect(dashboard.locator("#waiting")).to_have_count(0)  # no longer waiting: no form
