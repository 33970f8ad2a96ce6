"""Reads are bounded: a run's states come a page at a time, and run event streams are capped per client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx
from exosphere_testing import ServerProcess
from exospherehost import StateManager

from ..blackbox.helpers import claim_all, executed, node, register, trigger, upsert

FANOUT = 1201  # more than one page of the SDK's reads (1,000)


def fan_out_run(api: httpx.Client, namespace: str) -> str:
    register(api, {"Many": ((), ("n",))})
    upsert(api, "many", [node("many", "Many", namespace)])
    run_id = trigger(api, "many")
    [root] = claim_all(api, "Many", count=1)
    assert executed(api, root, *({"n": str(i)} for i in range(FANOUT))).status_code == 200
    return run_id


def test_run_states_are_paginated_and_the_sdk_reads_every_page(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    run_id = fan_out_run(api, namespace)
    default = api.get(f"/run/{run_id}/states").json()
    assert default["total"] == FANOUT and default["count"] == len(default["states"]) == 1000

    seen: list[str] = []
    for page in (1, 2, 3):
        body = api.get(f"/run/{run_id}/states", params={"page": page, "size": 500}).json()
        assert body["page"] == page and body["size"] == 500 and body["total"] == FANOUT
        seen += [s["state_id"] for s in body["states"]]
    assert len(seen) == len(set(seen)) == FANOUT

    too_big = api.get(f"/run/{run_id}/states", params={"size": 100_000})
    assert too_big.status_code == 422 and "size" in too_big.text
    assert api.get("/run/000000000000000000000000/states").status_code == 404

    async def read_all() -> list[dict[str, object]]:
        manager = StateManager(namespace, state_manager_uri=server.url, key=server.api_key)
        return await manager.get_run_states(run_id)

    every = asyncio.run(read_all())
    assert len({s["state_id"] for s in every}) == FANOUT


def test_run_streams_are_capped_per_client_dashboard_and_api_together(
    make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    server = make_server(env={"EXOSPHERE_MAX_LIVE_VIEWS_PER_CLIENT": "4"})
    api = httpx.Client(base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key})
    register(api, {"Echo": ((), ("out",))})
    upsert(api, "one", [node("one", "Echo", namespace)])
    run_id = trigger(api, "one")
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        login = browser.post("/dashboard/login", data={"api_key": server.api_key, "next": "/dashboard/"})
        assert login.status_code == 303
        dashboard_url = f"/dashboard/api/ns/{namespace}/runs/{run_id}/events"
        api_url = f"/run/{run_id}/events"
        with contextlib.ExitStack() as streams:
            opened = [streams.enter_context(browser.stream("GET", dashboard_url)) for _ in range(2)]
            opened += [streams.enter_context(api.stream("GET", api_url)) for _ in range(2)]
            assert [r.status_code for r in opened] == [200] * 4
            for refused in (browser.get(dashboard_url), api.get(api_url)):
                assert refused.status_code == 429 and "live views" in refused.json()["detail"]
                assert refused.headers["retry-after"] == "5"
            opened[-1].close()  # an API stream ends: the dashboard may open one again
            deadline = time.monotonic() + 60
            while True:  # the server frees the slot when it notices the stream is gone
                with browser.stream("GET", dashboard_url) as again:
                    if again.status_code == 200:
                        break
                assert time.monotonic() < deadline, "a closed run stream never freed its slot"
                time.sleep(0.2)
