"""Usage on the run page in headless Chromium: per node and for the run, live as results arrive (a
failed attempt's usage too), and per attempt on the state page."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from .test_run_visibility import _claim_as_runtime, _finish_joins


def _cells(page: Page, selector: str) -> list[str]:
    return [c.strip() for c in page.locator(selector).locator("td, th").all_inner_texts()]


def test_the_run_page_shows_usage_per_node_and_for_the_run_live(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str
) -> None:
    body = {"store": {"text": "x"}, "priority": 3, "budget": {"tokens": 100_000, "cost_usd": 20}}
    run_id = api.post(f"/graph/{pipeline}/trigger", json=body).json()["run_id"]
    dashboard.goto(f"/dashboard/ns/{namespace}/runs/{run_id}")
    expect(dashboard.locator("#usage-card")).to_be_hidden()  # nothing reported yet
    expect(dashboard.locator("#run-priority")).to_have_text("priority 3")
    expect(dashboard.locator("#run-budget")).to_have_text("budget 100,000 tokens, $20.00")

    [root] = _claim_as_runtime(api, "Split", 1)
    usage = {"input_tokens": 1200, "output_tokens": 80, "requests": 1, "cost_usd": 0.0031}
    answer = api.post(
        f"/state/{root['state_id']}/executed",
        json={"outputs": [{"part": "a"}, {"part": "b"}], "lease_id": root["lease_id"], "usage": usage},
    )
    assert answer.status_code == 200, answer.text
    expect(dashboard.locator("#usage-card")).to_be_visible()  # live, without a reload
    expect(dashboard.locator('#usage tr[data-usage-node="split"]')).to_have_count(1)
    assert _cells(dashboard, '#usage tr[data-usage-node="split"]') == ["split", "1,200", "80", "1", "$0.0031"]

    first, second = _claim_as_runtime(api, "Work", 2)
    failed = api.post(
        f"/state/{first['state_id']}/errored",
        json={"error": "boom", "lease_id": first["lease_id"], "usage": {"input_tokens": 10_000, "cost_usd": 1.5}},
    )
    assert failed.status_code == 200, failed.text
    done = api.post(
        f"/state/{second['state_id']}/executed",
        json={"outputs": [{"out": "B"}], "lease_id": second["lease_id"], "usage": {"input_tokens": 5, "requests": 2}},
    )
    assert done.status_code == 200, done.text
    expect(dashboard.locator('#usage tr[data-usage-node="work"] td').nth(1)).to_have_text("10,005")
    assert _cells(dashboard, '#usage tr[data-usage-node="work"]') == ["work", "10,005", "0", "2", "$1.50"]
    total = dashboard.locator("#usage [data-usage-total]")
    assert _cells(dashboard, "#usage [data-usage-total]") == ["Run total", "11,205", "80", "3", "$1.50"]
    expect(total).to_be_visible()

    _finish_joins(api)
    dashboard.reload()  # rendered by the server the same way
    assert _cells(dashboard, '#usage tr[data-usage-node="work"]') == ["work", "10,005", "0", "2", "$1.50"]
    assert _cells(dashboard, "#usage [data-usage-total]") == ["Run total", "11,205", "80", "3", "$1.50"]

    dashboard.goto(f"/dashboard/ns/{namespace}/runs")  # the run's total in the list of runs
    expect(dashboard.locator(f'#runs tr[data-run="{run_id}"] [data-role="usage"]')).to_have_text("11,285 tokens, $1.50")

    dashboard.goto(f"/dashboard/ns/{namespace}/states/{first['state_id']}")
    expect(dashboard.locator("#state-usage")).to_have_text("10,000 in + 0 out tokens, $1.50")
