"""The dashboard in a real headless Chromium against a real server: login, templates, runs, live graph, retry,
cancel."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess
from playwright.sync_api import BrowserContext, Page, Response, expect

from ..blackbox.helpers import claim_all, errored, executed, node, register, states, trigger, upsert
from .conftest import log_in

SECRET_VALUE = "s3cr3t-value-7f1d9c2b"
# Badge colours of dashboard.css, one per phase of `exospherehost.statuses`, as the browser computes them.
PHASE_COLOUR = {
    "errored": "rgb(251, 227, 225)",
    "retried": "rgb(238, 230, 247)",
    "waiting": "rgb(251, 240, 214)",
    "success": "rgb(223, 243, 231)",
}
NODES = {"Split": (("text",), ("part",)), "Work": (("part",), ("out",)), "Join": (("x",), ("all",))}


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


def node_box(page: Page, identifier: str) -> Any:
    return page.locator(f'svg#graph g.node[data-node="{identifier}"]')


def session_cookie(context: BrowserContext) -> dict[str, Any] | None:
    return next((dict(c) for c in context.cookies() if c["name"] == "exosphere_session"), None)


def test_login_keeps_the_session_in_an_httponly_strict_cookie(page: Page, server: ServerProcess) -> None:
    page.goto("/dashboard/")
    assert "/dashboard/login" in page.url  # not logged in yet: sent to the form
    log_in(page, server.api_key)
    expect(page.locator("h1")).to_have_text("Namespaces")
    cookie = session_cookie(page.context)
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert server.api_key not in cookie["value"]  # a signed token, never the key itself
    assert "exosphere_session" not in page.evaluate("document.cookie")  # JavaScript cannot read it


def test_a_wrong_key_is_refused(page: Page, server: ServerProcess) -> None:
    log_in(page, "not-the-key")
    expect(page.locator("#login-error")).to_contain_text("not valid")
    assert session_cookie(page.context) is None
    assert page.request.get("/dashboard/api/ns/any/runs/any/progress").status == 401
    page.context.add_cookies([{"name": "exosphere_session", "value": "1.2.3", "url": server.url + "/dashboard"}])
    page.goto("/dashboard/")
    assert "/dashboard/login" in page.url  # a forged cookie is no session


def test_templates_show_validation_and_are_drawn_with_unites(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str
) -> None:
    upsert(api, "broken", [node("work", "Work", namespace)])  # `part` is required by the registered node
    dashboard.goto("/dashboard/")
    dashboard.locator(f'tr[data-namespace="{namespace}"] a').first.click()
    expect(dashboard.locator(f'tr[data-graph="{pipeline}"] .badge')).to_have_text("VALID")
    expect(dashboard.locator('tr[data-graph="broken"] .badge')).to_have_text("INVALID")
    dashboard.click('tr[data-graph="broken"] a >> nth=0')
    expect(dashboard.locator("#validation-errors")).to_contain_text("Input 'part'")
    dashboard.go_back()
    dashboard.click(f'tr[data-graph="{pipeline}"] a >> nth=0')
    expect(dashboard.locator("#validation-status")).to_have_text("VALID")
    for identifier in ("split", "work", "join"):
        expect(node_box(dashboard, identifier)).to_be_visible()
    expect(dashboard.locator('path.edge-next[data-edge="split->work"]')).to_have_count(1)
    expect(dashboard.locator('path.edge-next[data-edge="work->join"]')).to_have_count(1)
    expect(dashboard.locator('path.edge-unites[data-edge="split->join"]')).to_have_count(1)
    expect(dashboard.locator("#secret-names")).to_contain_text("api_token")


def test_run_graph_follows_the_run_live_without_reloading(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str
) -> None:
    run_id = trigger(api, pipeline, store={"text": "a b c"})
    dashboard.goto(f"/dashboard/ns/{namespace}/runs/{run_id}")
    expect(dashboard.locator("#live")).to_have_attribute("data-live", "connected")
    dashboard.evaluate("window.__notReloaded = true")
    expect(node_box(dashboard, "split")).to_have_attribute("data-phase", "waiting")
    expect(node_box(dashboard, "work")).to_have_attribute("data-phase", "none")

    [root] = claim_all(api, "Split", count=1)
    expect(node_box(dashboard, "split")).to_have_attribute("data-phase", "running")
    executed(api, root, {"part": "a"}, {"part": "b"}, {"part": "c"})
    expect(node_box(dashboard, "split")).to_have_attribute("data-phase", "success")
    expect(node_box(dashboard, "split").locator('[data-role="fanout"]')).to_have_text("×3")
    expect(node_box(dashboard, "work")).to_have_attribute("data-phase", "waiting")
    expect(node_box(dashboard, "work").locator('[data-role="counts"]')).to_have_text("3 waiting")

    works = claim_all(api, "Work", count=3)
    executed(api, works[0], {"out": "A"})
    executed(api, works[1], {"out": "B"})
    errored(api, works[2], "kaput")
    expect(node_box(dashboard, "work")).to_have_attribute("data-phase", "errored")
    expect(node_box(dashboard, "work").locator('[data-role="counts"]')).to_have_text("1 failed · 2 done")
    expect(node_box(dashboard, "join")).to_have_attribute("data-phase", "waiting")
    joins = [s for s in states(api, run_id) if s["identifier"] == "join"]  # one per split branch
    for join in claim_all(api, "Join", count=len(joins)):
        executed(api, join, {"all": "done"})
    expect(dashboard.locator("#run-status")).to_have_text("FAILED")
    assert dashboard.evaluate("window.__notReloaded") is True


def test_a_node_lists_its_states_a_page_at_a_time(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str
) -> None:
    run_id = trigger(api, pipeline, store={"text": "many"})
    [root] = claim_all(api, "Split", count=1)
    executed(api, root, *({"part": str(i)} for i in range(120)))
    dashboard.goto(f"/dashboard/ns/{namespace}/runs/{run_id}")
    expect(node_box(dashboard, "work").locator('[data-role="fanout"]')).to_have_text("×120")
    node_box(dashboard, "work").click()
    expect(dashboard.locator("#node-panel-total")).to_have_text("120 states")
    expect(dashboard.locator("#node-states tbody tr")).to_have_count(50)
    dashboard.click("#node-next")
    dashboard.click("#node-next")
    expect(dashboard.locator("#node-page")).to_have_text("page 3 of 3")
    expect(dashboard.locator("#node-states tbody tr")).to_have_count(20)
    dashboard.select_option("#node-status", "SUCCESS")
    expect(dashboard.locator("#node-panel-total")).to_have_text("0 states")


def test_cancel_a_run_from_its_page_only_after_confirming(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str
) -> None:
    run_id = trigger(api, pipeline, store={"text": "x"})
    [root] = claim_all(api, "Split", count=1)
    executed(api, root, {"part": "a"}, {"part": "b"})
    [held] = claim_all(api, "Work", count=1)
    dashboard.goto(f"/dashboard/ns/{namespace}/runs/{run_id}")
    expect(dashboard.locator("#cancel-run")).to_be_enabled()

    asked: list[str] = []
    dashboard.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    dashboard.click("#cancel-run")
    assert asked and run_id in asked[0]
    assert api.get(f"/run/{run_id}").json()["status"] == "PENDING"  # declined: nothing was sent

    dashboard.once("dialog", lambda dialog: dialog.accept())
    dashboard.click("#cancel-run")
    expect(dashboard.locator("#cancel-result")).to_have_text("Cancelled: 2 states")
    expect(dashboard.locator("#run-status")).to_have_text("CANCELLED")  # from the live events
    expect(dashboard.locator("#cancel-run")).to_be_disabled()
    expect(node_box(dashboard, "work")).to_have_attribute("data-phase", "cancelled")
    assert executed(api, held, {"out": "late"}).status_code == 409
    dashboard.reload()
    expect(dashboard.locator("#cancel-reason")).to_have_text("Cancelled: cancelled from the dashboard (2 states)")
    expect(dashboard.locator("#cancel-run")).to_have_count(0)


def test_retry_an_errored_state_from_its_page_and_see_the_new_attempt_succeed(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str
) -> None:
    run_id = trigger(api, pipeline, store={"text": "x"})
    [root] = claim_all(api, "Split", count=1)
    executed(api, root, {"part": "only"})
    [work] = claim_all(api, "Work", count=1)
    errored(api, work, "kaput: the disk is full")

    dashboard.goto(f"/dashboard/ns/{namespace}/runs/{run_id}")
    node_box(dashboard, "work").click()
    dashboard.click(f'#node-states tr[data-state="{work["state_id"]}"] a')
    expect(dashboard.locator("#state-status")).to_have_text("ERRORED")
    expect(dashboard.locator("#state-status")).to_have_css("background-color", PHASE_COLOUR["errored"])
    expect(dashboard.locator("#state-error")).to_contain_text("kaput: the disk is full")
    expect(dashboard.locator("#state-inputs")).to_contain_text('"part": "only"')
    expect(dashboard.locator("#state-claims")).to_have_text("1")
    expect(dashboard.locator("#timings")).to_contain_text("Ran")

    dashboard.click("#retry")
    new_id = dashboard.locator("#new-attempt").get_attribute("data-state")
    assert new_id and new_id != work["state_id"]
    expect(dashboard.locator("#state-status")).to_have_text("RETRY_CREATED")
    expect(dashboard.locator("#state-status")).to_have_css("background-color", PHASE_COLOUR["retried"])
    expect(dashboard.locator(f'#attempts tr[data-state="{new_id}"]')).to_have_attribute("data-status", "CREATED")
    new_badge = dashboard.locator(f'#attempts tr[data-state="{new_id}"] .badge')
    expect(new_badge).to_have_css("background-color", PHASE_COLOUR["waiting"])
    expect(dashboard.locator("#retry")).to_be_disabled()

    [again] = claim_all(api, "Work", count=1)
    assert again["state_id"] == new_id
    assert executed(api, again, {"out": "fine"}).status_code == 200
    expect(dashboard.locator(f'#attempts tr[data-state="{new_id}"]')).to_have_attribute("data-status", "SUCCESS")
    dashboard.click("#new-attempt")
    expect(dashboard.locator("#state-status")).to_have_text("SUCCESS")
    expect(dashboard.locator("#state-status")).to_have_css("background-color", PHASE_COLOUR["success"])
    expect(dashboard.locator("#state-outputs")).to_contain_text('"out": "fine"')
    assert {s["state_id"]: s["status"] for s in states(api, run_id)}[new_id] == "SUCCESS"


def test_no_secret_value_appears_in_any_page_or_response(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str, server: ServerProcess
) -> None:
    run_id = trigger(api, pipeline, store={"text": "x"})
    [root] = claim_all(api, "Split", count=1)
    assert api.get(f"/state/{root['state_id']}/secrets").json() == {"secrets": {"api_token": SECRET_VALUE}}
    executed(api, root, {"part": "p"})
    [work] = claim_all(api, "Work", count=1)
    errored(api, work, "failed")

    bodies: list[tuple[str, str]] = []

    def keep(response: Response) -> None:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            bodies.append((response.url, response.text()))

    dashboard.on("response", keep)
    base = f"/dashboard/ns/{namespace}"
    for path in ("/dashboard/", base, f"{base}/graphs/{pipeline}", f"{base}/runs", f"{base}/runs/{run_id}"):
        dashboard.goto(path)
        bodies.append((path, dashboard.content()))
    node_box(dashboard, "work").click()
    dashboard.click(f'#node-states tr[data-state="{work["state_id"]}"] a')
    dashboard.click("#retry")
    expect(dashboard.locator("#new-attempt")).to_be_visible()
    bodies.append(("state page", dashboard.content()))
    api_base = f"/dashboard/api/ns/{namespace}"
    for path in (
        f"{api_base}/runs/{run_id}/progress",
        f"{api_base}/runs/{run_id}/nodes/work/states",
        f"{api_base}/states/{work['state_id']}/attempts",
    ):
        bodies.append((path, dashboard.request.get(path).text()))
    cookie = session_cookie(dashboard.context)
    assert cookie is not None
    with (
        httpx.Client(base_url=server.url, cookies={cookie["name"]: cookie["value"]}) as client,
        client.stream("GET", f"{api_base}/runs/{run_id}/events") as stream,
    ):
        first_event = next(line for line in stream.iter_lines() if line.startswith("data:"))
    assert json.loads(first_event.removeprefix("data:"))["run_id"] == run_id
    bodies.append(("events", first_event))

    assert len(bodies) > 12
    leaking = [url for url, body in bodies if SECRET_VALUE in body]
    assert leaking == []


def test_runs_list_filters_and_pages_newest_first(
    dashboard: Page, api: httpx.Client, namespace: str, pipeline: str
) -> None:
    register(api, NODES)
    upsert(
        api,
        "other",
        [node("split", "Split", namespace, {"text": "${{ store.text }}"})],
        store_config={"required_keys": ["text"]},
    )
    run_ids = [trigger(api, pipeline, store={"text": str(i)}) for i in range(27)]
    other = trigger(api, "other", store={"text": "o"})
    [root] = claim_all(api, "Split", count=28)[-1:]  # claims are oldest first: the last is `other`'s
    executed(api, root, {"part": "done"})

    dashboard.goto(f"/dashboard/ns/{namespace}/runs")
    expect(dashboard.locator("#runs-total")).to_contain_text("28 runs")
    expect(dashboard.locator("#runs tbody tr")).to_have_count(25)
    assert dashboard.locator("#runs tbody tr").first.get_attribute("data-run") == other
    row = dashboard.locator(f'#runs tr[data-run="{run_ids[-1]}"]')
    expect(row.locator("td").nth(3)).to_have_text("0")  # succeeded
    expect(row.locator("td").nth(4)).to_have_text("1")  # pending
    dashboard.click("#next-page")
    expect(dashboard.locator("#runs tbody tr")).to_have_count(3)
    assert dashboard.locator("#runs tbody tr").last.get_attribute("data-run") == run_ids[0]

    dashboard.select_option("#filter-status", "SUCCESS")
    dashboard.click("#apply-filters")
    expect(dashboard.locator("#runs tbody tr")).to_have_count(1)
    assert dashboard.locator("#runs tbody tr").first.get_attribute("data-run") == other
    dashboard.goto(f"/dashboard/ns/{namespace}/runs?graph={pipeline}&status=PENDING")
    expect(dashboard.locator("#runs-total")).to_contain_text("27 runs")
    dashboard.goto(f"/dashboard/ns/{namespace}/runs?to=2001-01-01T00:00")
    expect(dashboard.locator("#runs-total")).to_contain_text("0 runs")


def test_logout_ends_the_session(dashboard: Page) -> None:
    dashboard.click("#logout")
    expect(dashboard.locator("#api-key")).to_be_visible()
    assert session_cookie(dashboard.context) is None
    dashboard.goto("/dashboard/")
    assert "/dashboard/login" in dashboard.url
    assert dashboard.request.get("/dashboard/api/ns/any/runs/any/progress").status == 401
