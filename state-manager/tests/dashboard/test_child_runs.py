"""Child graphs in headless Chromium: a run lists the child runs its states started, each child run links
back to its parent run and state, and a state's page lists the child run of each of its attempts."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from ..blackbox.helpers import claim_all, executed, node, register, upsert


def test_the_run_and_state_pages_link_parents_and_child_runs_both_ways(
    dashboard: Page, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Split": (("width",), ("item",)), "Hold": (("item",), ("item",))})
    upsert(api, "leaf", [node("leaf", "Hold", namespace, {"item": ""})])
    child = {
        "graph_name": "leaf",
        "namespace": namespace,
        "identifier": "sub",
        "inputs": {"item": "${{ split.outputs.item }}"},
    }
    upsert(api, "tree", [node("split", "Split", namespace, {"width": "2"}, ["sub"]), child])
    run_id = api.post("/graph/tree/trigger", json={}).json()["run_id"]
    [split] = claim_all(api, "Split", count=1)
    assert executed(api, split, {"item": "a"}, {"item": "b"}).status_code == 200
    [leaf] = claim_all(api, "Hold", count=2)[:1]
    assert executed(api, leaf, {"item": "done"}).status_code == 200
    children = {c["run_id"]: c for c in api.get(f"/run/{run_id}").json()["child_runs"]}
    assert sorted(c["status"] for c in children.values()) == ["PENDING", "SUCCESS"]

    dashboard.goto(f"/dashboard/ns/{namespace}/graphs/tree")  # the template links the graph it names
    dashboard.locator('#template-nodes tr[data-identifier="sub"] a.child-graph').click()
    expect(dashboard.locator("#template-nodes tr[data-identifier='leaf']")).to_be_visible()

    dashboard.goto(f"/dashboard/ns/{namespace}/runs/{run_id}")
    rows = dashboard.locator("#child-runs tbody tr")
    expect(rows).to_have_count(2)
    assert {rows.nth(i).get_attribute("data-child-run") for i in range(2)} == set(children)
    done = next(c for c in children.values() if c["status"] == "SUCCESS")
    row = dashboard.locator(f'#child-runs tr[data-child-run="{done["run_id"]}"]')
    expect(row).to_contain_text("SUCCESS")
    expect(row).to_contain_text("leaf")

    row.locator(f'a[href$="/runs/{done["run_id"]}"]').click()  # down to the child run
    expect(dashboard.locator("h1 code")).to_have_text(done["run_id"])
    parent = dashboard.locator("#parent-run")
    expect(parent).to_contain_text(run_id)
    parent.locator(f'a[href$="/states/{done["parent_state_id"]}"]').click()  # up to the state it ran for
    expect(dashboard.locator(f'#child-runs tr[data-child-run="{done["run_id"]}"]')).to_contain_text("SUCCESS")
    dashboard.locator(f'a[href$="/runs/{run_id}"]').first.click()  # and to the parent run
    expect(dashboard.locator("h1 code")).to_have_text(run_id)
