"""How quickly the dashboard opens a big run: 5,000 states of one node (fanned out), in headless Chromium.

    .venv/bin/python bench/dashboard_bench.py

Builds a run whose root fans out to 5,000 `work` states (10,000 states in all), finishes part of them,
then measures in Chromium the time to the first full render of the run page (HTML parsed, graph
drawn, live stream connected) and, over HTTP, the server time of the endpoints behind it (median
and p95 of repeated calls over loopback). SQLite always; PostgreSQL too when
`EXOSPHERE_BENCH_POSTGRES_URL` is set (an admin URL, as `make bench` sets). Needs /usr/bin/chromium.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from exosphere_testing import CHROMIUM_ARGS, ServerProcess, ensure_chromium, fresh_postgres_url, sqlite_url
from playwright.sync_api import sync_playwright

FANOUT = 5_000
REPEAT = 20
NS = "bench"


def schema(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": list(names)}


def claim(api: httpx.Client, node: str, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        body = {"nodes": [node], "batch_size": min(1000, count - len(got)), "wait_ms": 2000}
        found = api.post("/states/enqueue", json=body).json()["states"]
        if not found:
            raise RuntimeError(f"only {len(got)} of {count} {node} states could be claimed")
        got += found
    return got


def big_run(api: httpx.Client) -> str:
    nodes = [("Split", ("text",), ("part",)), ("Work", ("part",), ("out",))]
    registration = [
        {"name": n, "inputs_schema": schema(*i), "outputs_schema": schema(*o), "secrets": []} for n, i, o in nodes
    ]
    api.put("/nodes/", json={"runtime_name": "bench", "nodes": registration}).raise_for_status()
    graph = [
        {"node_name": "Split", "namespace": NS, "identifier": "split", "inputs": {"text": "x"}, "next_nodes": ["work"]},
        {"node_name": "Work", "namespace": NS, "identifier": "work", "inputs": {"part": "${{ split.outputs.part }}"}},
    ]
    api.put("/graph/fanout", json={"nodes": graph, "secrets": {}}).raise_for_status()
    run_id = str(api.post("/graph/fanout/trigger", json={}).json()["run_id"])
    [root] = claim(api, "Split", 1)
    outputs = [{"part": str(i)} for i in range(FANOUT)]
    api.post(f"/state/{root['state_id']}/executed", json={"outputs": outputs}, timeout=300).raise_for_status()
    for state in claim(api, "Work", 1_500)[:1_000]:  # a run in flight: 1,000 done, 500 running, 3,500 waiting
        api.post(f"/state/{state['state_id']}/executed", json={"outputs": [{"out": "y"}]}).raise_for_status()
    return run_id


def timed(call: Callable[[], Any]) -> tuple[float, float]:
    samples = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def first_event(client: httpx.Client, url: str) -> None:
    with client.stream("GET", url) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                return


def measure(label: str, database_url: str) -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        ServerProcess(database_url, log_path=Path(directory) / "log") as server,
    ):
        api = httpx.Client(
            base_url=f"{server.url}/v0/namespace/{NS}", headers={"x-api-key": server.api_key}, timeout=60
        )
        started = time.perf_counter()
        run_id = big_run(api)
        took = time.perf_counter() - started
        print(f"[{label}] built a run of {FANOUT * 2:,} states ({FANOUT:,} of one node) in {took:.1f} s")

        page_url = f"/dashboard/ns/{NS}/runs/{run_id}"
        api_base = f"/dashboard/api/ns/{NS}/runs/{run_id}"
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(ensure_chromium()), args=CHROMIUM_ARGS)
            page = browser.new_page(base_url=server.url, viewport={"width": 1400, "height": 900})
            page.goto("/dashboard/login")
            page.fill("#api-key", server.api_key)
            page.click("#login")
            page.wait_for_load_state()
            renders, live = [], []
            for _ in range(5):
                start = time.perf_counter()
                page.goto(page_url)
                page.wait_for_selector('g.node[data-node="work"][data-total="5000"]')
                renders.append((time.perf_counter() - start) * 1000)
                page.wait_for_selector('#live[data-live="connected"]')
                live.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            page.locator('g.node[data-node="work"]').click()
            page.wait_for_selector("#node-states tbody tr >> nth=49")
            open_node = (time.perf_counter() - start) * 1000
            cookie = next(c for c in page.context.cookies() if c["name"] == "exosphere_session")
            browser.close()

        print(
            f"[{label}] Chromium, run page to graph drawn with counts: median {statistics.median(renders):.0f} ms "
            f"(best {min(renders):.0f} ms of 5)"
        )
        print(f"[{label}] Chromium, run page to live updates connected: median {statistics.median(live):.0f} ms")
        print(f"[{label}] Chromium, click the 5,000-state node to its first 50 states listed: {open_node:.0f} ms")
        with httpx.Client(base_url=server.url, cookies={cookie["name"]: cookie["value"]}, timeout=60) as client:
            endpoints: list[tuple[str, Callable[[], Any]]] = [
                ("GET run page (HTML)", lambda: client.get(page_url).raise_for_status()),
                ("GET .../progress (per-node counts)", lambda: client.get(api_base + "/progress").raise_for_status()),
                (
                    "GET .../nodes/work/states page 1",
                    lambda: client.get(api_base + "/nodes/work/states").raise_for_status(),
                ),
                (
                    "GET .../nodes/work/states page 100",
                    lambda: client.get(api_base + "/nodes/work/states?page=100").raise_for_status(),
                ),
                ("GET .../events to first event", lambda: first_event(client, api_base + "/events")),
            ]
            for name, call in endpoints:
                median, p95 = timed(call)
                print(f"[{label}] server {name:<40} median {median:6.1f} ms   p95 {p95:6.1f} ms")


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        measure("sqlite", sqlite_url(Path(directory)))
    admin = os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL")
    if admin:
        measure("postgres", fresh_postgres_url(admin))
    else:
        print("(PostgreSQL skipped: set EXOSPHERE_BENCH_POSTGRES_URL=$(scripts/postgres.sh start))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
