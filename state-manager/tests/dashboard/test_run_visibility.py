"""The run page in headless Chromium: failed states at a glance, a live timeline readable at a fan-out of
1,000, durations, and a state's traceback and runtime."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from ..blackbox.helpers import executed

RUNTIME = {"runtime_name": "dash-runtime", "runtime_instance": "host-a:4242"}
TRACEBACK = 'Traceback (most recent call last):\n  File "work.py", line 3, in execute\nOSError: kaput'


def _claim_as_runtime(api: httpx.Client, node_name: str, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        body = {"nodes": [node_name], "batch_size": min(500, count - len(got)), "wait_ms": 1000, **RUNTIME}
        response = api.post("/states/enqueue", json=body)
        assert response.status_code == 200, response.text
        got += response.json()["states"]
    return got


def _finish_joins(api: httpx.Client) -> int:
    """Claim and complete every join there is (a unite per fan-out branch of split); how many."""
    done = 0
    while joins := api.post("/states/enqueue", json={"nodes": ["Join"], "batch_size": 500, **RUNTIME}).json()["states"]:
        _executed_many(api, joins, {"all": "done"})
        done += len(joins)
    return done


def _claimed(api: httpx.Client, run_id: str) -> int:
    """How many of the run's states were ever handed to a runtime: the timeline's bars."""
    states = api.get(f"/run/{run_id}/states", params={"size": 5000}).json()["states"]
    return sum(s["started_at"] is not None for s in states)


def _executed_many(api: httpx.Client, claimed: list[dict[str, Any]], outputs: dict[str, str]) -> None:
    for first in range(0, len(claimed), 500):
        results = [
            {"state_id": s["state_id"], "lease_id": s["lease_id"], "outputs": [outputs]}
            for s in claimed[first : first + 500]
        ]
        answer = api.post("/states/executed", json={"results": results})
        assert answer.status_code == 200 and all(r["status"] == "EXECUTED" for r in answer.json()["results"])


def test_a_failed_run_opens_with_its_failed_states_and_each_leads_to_its_traceback(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str
) -> None:
    run_id = api.post(f"/graph/{pipeline}/trigger", json={"store": {"text": "x"}}).json()["run_id"]
    [root] = _claim_as_runtime(api, "Split", 1)
    executed(api, root, *({"part": str(i)} for i in range(40)))
    work = _claim_as_runtime(api, "Work", 40)
    failing = work[:3]
    for state in failing:
        answer = api.post(
            f"/state/{state['state_id']}/errored",
            json={"error": "OSError: kaput", "lease_id": state["lease_id"], "traceback": TRACEBACK},
        )
        assert answer.status_code == 200, answer.text
    _executed_many(api, work[3:], {"out": "ok"})
    assert _finish_joins(api) > 0

    dashboard.goto(f"/dashboard/ns/{namespace}/runs/{run_id}")
    expect(dashboard.locator("#run-status")).to_have_text("FAILED")
    panel = dashboard.locator("#failures")
    expect(panel).to_be_visible()
    expect(panel.locator("#failures-total")).to_have_text("3")
    rows = panel.locator("tbody tr")
    expect(rows).to_have_count(3)
    assert {rows.nth(i).get_attribute("data-state") for i in range(3)} == {s["state_id"] for s in failing}
    expect(rows.first).to_contain_text("work")
    expect(rows.first).to_contain_text("OSError: kaput")
    expect(rows.first).to_contain_text("dash-runtime")
    expect(dashboard.locator("#run-duration")).to_contain_text("took")

    rows.first.locator("a").click()
    expect(dashboard.locator("#state-status")).to_have_text("ERRORED")
    expect(dashboard.locator("#state-traceback")).to_contain_text('File "work.py", line 3, in execute')
    expect(dashboard.locator("#state-runtime")).to_have_text("dash-runtime")
    expect(dashboard.locator("#timings")).to_contain_text("host-a:4242")


def test_a_run_that_did_not_fail_has_no_failure_panel_and_the_runs_list_shows_durations(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str
) -> None:
    run_id = api.post(f"/graph/{pipeline}/trigger", json={"store": {"text": "x"}}).json()["run_id"]
    dashboard.goto(f"/dashboard/ns/{namespace}/runs/{run_id}")
    expect(dashboard.locator("#run-duration")).to_have_text("in progress")
    expect(dashboard.locator("#failures")).to_have_count(0)
    [root] = _claim_as_runtime(api, "Split", 1)
    executed(api, root, {"part": "a"})
    [work] = _claim_as_runtime(api, "Work", 1)
    executed(api, work, {"out": "A"})
    assert _finish_joins(api) == 1
    expect(dashboard.locator("#run-status")).to_have_text("SUCCESS")  # live, without a reload
    expect(dashboard.locator("#run-duration")).to_contain_text("took")
    dashboard.goto(f"/dashboard/ns/{namespace}/runs")
    duration = dashboard.locator(f'#runs tr[data-run="{run_id}"] [data-role="duration"]')
    expect(duration).to_have_text(__import__("re").compile(r"^\d+(\.\d+)? (ms|s|min)$"))


def test_the_timeline_draws_one_bar_per_attempt_live_and_stays_readable_at_a_fan_out_of_1000(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str
) -> None:
    run_id = api.post(f"/graph/{pipeline}/trigger", json={"store": {"text": "x"}}).json()["run_id"]
    dashboard.goto(f"/dashboard/ns/{namespace}/runs/{run_id}")
    timeline = dashboard.locator("svg#timeline")
    expect(dashboard.locator("#timeline-note")).to_have_text("no attempt has started yet")

    [root] = _claim_as_runtime(api, "Split", 1)
    expect(timeline.locator("rect.bar")).to_have_count(1)  # drawn live: the claim alone makes a bar
    expect(timeline.locator(f'rect.bar[data-state="{root["state_id"]}"]')).to_have_attribute("data-status", "QUEUED")
    executed(api, root, *({"part": str(i)} for i in range(1000)))
    work = _claim_as_runtime(api, "Work", 1000)
    _executed_many(api, work, {"out": "ok"})
    assert _finish_joins(api) > 0
    expect(dashboard.locator("#run-status")).to_have_text("SUCCESS")
    bars = _claimed(api, run_id)
    assert bars >= 2001  # the root, 1,000 works, and the joins
    expect(timeline.locator("rect.bar")).to_have_count(bars)
    expect(dashboard.locator("#timeline-note")).to_have_text(f"{bars} attempts")

    rows = timeline.locator("g.lane")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).get_attribute("data-node") for i in range(3)] == ["split", "work", "join"]
    work_row = timeline.locator('g.lane[data-node="work"]')
    assert work_row.get_attribute("data-attempts") == "1000"
    # Readable: the fan-out's row stays bounded, and every bar is on screen with a visible width.
    box = work_row.bounding_box()
    assert box is not None and box["height"] <= 200, box
    svg_box = timeline.bounding_box()
    assert svg_box is not None
    bars = timeline.evaluate(
        """svg => [...svg.querySelectorAll('rect.bar')].map(b => {
             const r = b.getBoundingClientRect(); return [r.left, r.right, r.width, r.height]; })"""
    )
    assert all(w >= 0.9 and h >= 0.9 for _, _, w, h in bars)
    assert all(svg_box["x"] - 1 <= left and right <= svg_box["x"] + svg_box["width"] + 1 for left, right, _, _ in bars)
    expect(timeline.locator(f'rect.bar[data-state="{root["state_id"]}"]')).to_have_attribute("data-status", "SUCCESS")
    # A folded row draws bars over one another (1,000 lanes in 200 pixels), so click the one on top: the last drawn.
    on_top = work_row.locator("rect.bar").last
    clicked = on_top.get_attribute("data-state")
    assert clicked in {w["state_id"] for w in work}
    on_top.click()
    expect(dashboard).to_have_url(re.compile(f"/states/{clicked}$"))
    expect(dashboard.locator("#state-status")).to_have_text("SUCCESS")
    expect(dashboard.locator("h1")).to_contain_text("work")
