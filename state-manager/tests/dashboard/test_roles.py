"""The dashboard honours the role of the key that logged in, in a real headless Chromium: a viewer sees a
failed state but neither the retry button nor the audit log, and the server refuses the retry call
itself; an operator retries; an admin reads who did what; runtime keys cannot log in; a key for one
namespace sees only that namespace; revoking a key ends its sessions at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess
from playwright.sync_api import Page, expect

from ..blackbox.helpers import claim_all, errored, executed, node, register, trigger, upsert
from .conftest import log_in


def create_key(server: ServerProcess, name: str, role: str, namespace: str | None = None) -> dict[str, Any]:
    response = httpx.post(
        server.url + "/v0/keys",
        json={"name": name, "role": role, "namespace": namespace},
        headers={"x-api-key": server.api_key},
    )
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
def failed_state(api: httpx.Client, namespace: str) -> dict[str, Any]:
    """An ERRORED state (errors are final: no automatic retries), with its run id."""
    register(api, {"Step": (("text",), ("out",))})
    upsert(
        api,
        "one",
        [node("step", "Step", namespace, {"text": "${{ store.text }}"})],
        store_config={"required_keys": ["text"]},
        retry_policy={"max_retries": 0},
    )
    trigger(api, "one", store={"text": "x"})
    [state] = claim_all(api, "Step", count=1)
    assert errored(api, state, "it broke").status_code == 200
    return state


def state_url(namespace: str, state: dict[str, Any]) -> str:
    return f"/dashboard/ns/{namespace}/states/{state['state_id']}"


def press_retry_by_hand(page: Page, namespace: str, state: dict[str, Any]) -> dict[str, Any]:
    """The call the retry button makes, sent from the page with its session: what a viewer could forge."""
    url = f"/dashboard/api/ns/{namespace}/states/{state['state_id']}/retry"
    answer: dict[str, Any] = page.evaluate(
        """async (url) => {
            const r = await fetch(url, {method: "POST", headers: {"content-type": "application/json",
                "x-exosphere-dashboard": "1"}, body: JSON.stringify({fanout_id: "forged"})});
            return {status: r.status, body: await r.json()};
        }""",
        url,
    )
    return answer


def test_a_viewer_sees_a_failed_state_but_cannot_see_or_press_retry(
    page: Page, server: ServerProcess, namespace: str, failed_state: dict[str, Any]
) -> None:
    log_in(page, create_key(server, "watcher", "viewer")["key"])
    assert page.url.endswith("/dashboard/"), page.url
    expect(page.locator("#who")).to_have_text("watcher · viewer")
    expect(page.locator("#audit-link")).to_have_count(0)
    page.goto(state_url(namespace, failed_state))
    expect(page.locator("#state-status")).to_have_text("ERRORED")
    expect(page.locator("#state-error")).to_contain_text("it broke")
    expect(page.locator("#retry")).to_have_count(0)

    forged = press_retry_by_hand(page, namespace, failed_state)
    assert forged["status"] == 403 and "needs the operator or admin role" in forged["body"]["detail"], forged
    page.reload()
    expect(page.locator("#state-status")).to_have_text("ERRORED")  # nothing was retried
    assert page.goto("/dashboard/audit").status == 403  # type: ignore[union-attr]


def test_a_viewer_cannot_see_or_press_cancel_on_a_pending_run(
    page: Page, server: ServerProcess, namespace: str, api: httpx.Client
) -> None:
    register(api, {"Slow": (("text",), ("out",))})
    upsert(api, "slow", [node("slow", "Slow", namespace, {"text": "x"})])
    run_id = trigger(api, "slow")  # pending: nothing serves Slow
    log_in(page, create_key(server, "watcher", "viewer")["key"], f"/dashboard/ns/{namespace}/runs/{run_id}")
    expect(page.locator("#run")).to_have_count(1)
    expect(page.locator("#cancel-run")).to_have_count(0)
    forged: dict[str, Any] = page.evaluate(
        """async (url) => {
            const r = await fetch(url, {method: "POST", headers: {"content-type": "application/json",
                "x-exosphere-dashboard": "1"}, body: "{}"});
            return {status: r.status, body: await r.json()};
        }""",
        f"/dashboard/api/ns/{namespace}/runs/{run_id}/cancel",
    )
    assert forged["status"] == 403 and "cancel needs the operator or admin role" in forged["body"]["detail"], forged
    assert api.get(f"/run/{run_id}").json()["status"] == "PENDING"


def test_an_operator_retries_and_an_admin_reads_who_did_it_in_the_audit_log(
    page: Page, server: ServerProcess, namespace: str, api: httpx.Client, failed_state: dict[str, Any]
) -> None:
    operator = create_key(server, "on-call", "operator", namespace)
    log_in(page, operator["key"], state_url(namespace, failed_state))
    page.click("#retry")
    expect(page.locator("#state-status")).to_have_text("RETRY_CREATED")
    [again] = claim_all(api, "Step", count=1)
    assert executed(api, again, {"out": "ok"}).status_code == 200

    # Leave the live page first: logged out, its next refresh would send the browser to the login
    # page by itself and abort the navigation below.
    page.goto("about:blank")
    page.context.clear_cookies()
    log_in(page, server.api_key)
    page.click("#audit-link")
    row = page.locator("#audit tr[data-action='manual-retry']", has_text=failed_state["state_id"])
    expect(row).to_have_count(1)
    expect(row).to_contain_text("on-call")
    expect(row).to_contain_text(operator["id"])
    expect(row).to_contain_text(namespace)


def test_runtime_keys_cannot_open_the_dashboard(page: Page, server: ServerProcess) -> None:
    log_in(page, create_key(server, "a-runtime", "runtime")["key"])
    expect(page.locator("#login-error")).to_contain_text("runtime keys cannot open the dashboard")
    assert "/dashboard/login" in page.url


def test_a_key_for_one_namespace_sees_that_namespace_only(
    page: Page, server: ServerProcess, namespace: str, failed_state: dict[str, Any]
) -> None:
    other = namespace + "-other"
    with httpx.Client(base_url=f"{server.url}/v0/namespace/{other}", headers={"x-api-key": server.api_key}) as root:
        register(root, {"Lone": (("a",), ("b",))})
    log_in(page, create_key(server, "ns-viewer", "viewer", namespace)["key"])
    expect(page.locator(f'#namespaces tr[data-namespace="{namespace}"]')).to_have_count(1)
    expect(page.locator("#namespaces tr[data-namespace]")).to_have_count(1)
    assert page.goto(f"/dashboard/ns/{other}").status == 403  # type: ignore[union-attr]
    assert page.goto(f"/dashboard/ns/{namespace}").status == 200  # type: ignore[union-attr]


def test_revoking_a_key_ends_its_dashboard_sessions_at_once(
    page: Page, server: ServerProcess, failed_state: dict[str, Any]
) -> None:
    key = create_key(server, "leaving", "viewer")
    log_in(page, key["key"])
    assert page.url.endswith("/dashboard/")
    revoked = httpx.delete(f"{server.url}/v0/keys/{key['id']}", headers={"x-api-key": server.api_key})
    assert revoked.status_code == 200
    page.goto("/dashboard/")
    assert "/dashboard/login" in page.url
