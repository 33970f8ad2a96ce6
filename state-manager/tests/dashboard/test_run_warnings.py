"""The run page names a node no runtime serves, in a real headless Chromium (the wait set to one second)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until
from playwright.sync_api import Page, expect

from ..blackbox.helpers import node, register, run, trigger, upsert


@pytest.fixture(scope="module")
def server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(env={"EXOSPHERE_UNSERVED_NODE_SECONDS": "1"})


def test_the_run_page_says_which_node_no_runtime_serves(dashboard: Page, api: httpx.Client, namespace: str) -> None:
    register(api, {"Lonely": (("x",), ("y",))})
    upsert(api, "lonely", [node("lonely", "Lonely", namespace, {"x": "1"})])
    run_id = trigger(api, "lonely")
    warning = f"no runtime serves node Lonely (namespace {namespace})"
    wait_until(lambda: run(api, run_id)["warnings"] == [warning], what="the run to name the unserved node")
    dashboard.goto(f"/dashboard/ns/{namespace}/runs/{run_id}")
    expect(dashboard.locator(".run-warning")).to_have_text(
        f"{warning}: its states wait until a runtime serving it starts."
    )
    expect(dashboard.locator("#cancel-run")).to_be_enabled()  # still pending: it can be cancelled
