"""Screenshots of the dashboard's main pages into docs/img/, from a throwaway server with sample data.

    .venv/bin/python scripts/dashboard-screenshots.py

Uses Debian's Chromium (/usr/bin/chromium; `apt-get install -y chromium`) through Playwright.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from exosphere_testing import CHROMIUM_ARGS, ServerProcess, ensure_chromium, sqlite_url
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
NS = "demo"


def schema(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": list(names)}


def node(
    identifier: str, name: str, inputs: dict[str, str], nxt: list[str], unites: str | None = None
) -> dict[str, Any]:
    return {
        "node_name": name,
        "namespace": NS,
        "identifier": identifier,
        "inputs": inputs,
        "next_nodes": nxt,
        "unites": {"identifier": unites, "strategy": "ALL_DONE"} if unites else None,
    }


def claim(api: httpx.Client, name: str, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        body = {"nodes": [name], "batch_size": count - len(got), "wait_ms": 2000, "runtime_name": "demo-runtime"}
        found = api.post("/states/enqueue", json=body).json()["states"]
        if not found:
            break
        got += found
    return got


def done(api: httpx.Client, state: dict[str, Any], outputs: list[dict[str, str]]) -> None:
    body = {"outputs": outputs, "lease_id": state["lease_id"]}
    api.post(f"/state/{state['state_id']}/executed", json=body).raise_for_status()


def fail(api: httpx.Client, state: dict[str, Any], error: str) -> None:
    frames = '  File "ingest/parse.py", line 41, in execute\n    rows = read(path)\n'
    trace = f"Traceback (most recent call last):\n{frames}{error}"
    body = {"error": error, "lease_id": state["lease_id"], "traceback": trace}
    api.post(f"/state/{state['state_id']}/errored", json=body).raise_for_status()


def sample_data(api: httpx.Client) -> tuple[str, str]:
    """A template with a fan-out and a unite, a few finished runs, and one run caught mid-flight."""
    nodes = {
        "ListFiles": (("bucket",), ("path",)),
        "ParseFile": (("path",), ("rows",)),
        "Summarise": (("bucket",), ("report",)),
        "Notify": (("report",), ("sent",)),
    }
    registration = [
        {"name": n, "inputs_schema": schema(*i), "outputs_schema": schema(*o), "secrets": []}
        for n, (i, o) in nodes.items()
    ]
    api.put("/nodes/", json={"runtime_name": "demo-runtime", "nodes": registration}).raise_for_status()
    graph = [
        node("list", "ListFiles", {"bucket": "${{ store.bucket }}"}, ["parse"]),
        node("parse", "ParseFile", {"path": "${{ list.outputs.path }}"}, ["summarise"]),
        node("summarise", "Summarise", {"bucket": "${{ store.bucket }}"}, ["notify"], unites="list"),
        node("notify", "Notify", {"report": "${{ summarise.outputs.report }}"}, []),
    ]
    body = {
        "nodes": graph,
        "secrets": {"webhook_token": "never-shown"},
        "store_config": {"required_keys": ["bucket"]},
        "retry_policy": {"max_retries": 0, "strategy": "EXPONENTIAL", "backoff_factor": 2000},
    }
    api.put("/graph/nightly-ingest", json=body).raise_for_status()
    broken = {"nodes": [node("parse", "ParseFile", {}, [])], "secrets": {}}
    api.put("/graph/half-done", json=broken).raise_for_status()

    for bucket in ("2024-05-01", "2024-05-02"):  # two finished runs
        api.post("/graph/nightly-ingest/trigger", json={"store": {"bucket": bucket}}).raise_for_status()
        [root] = claim(api, "ListFiles", 1)
        done(api, root, [{"path": f"{bucket}/{i}.csv"} for i in range(3)])
        for state in claim(api, "ParseFile", 3):
            done(api, state, [{"rows": "120"}])
        for state in claim(api, "Summarise", 3):
            done(api, state, [{"report": "ok"}])
        for state in claim(api, "Notify", 3):
            done(api, state, [{"sent": "yes"}])

    response = api.post("/graph/nightly-ingest/trigger", json={"store": {"bucket": "2024-05-03"}})
    run_id = response.json()["run_id"]
    [root] = claim(api, "ListFiles", 1)
    done(api, root, [{"path": f"2024-05-03/part-{i:03}.csv"} for i in range(48)])
    parses = claim(api, "ParseFile", 30)
    for state in parses[:24]:
        done(api, state, [{"rows": "512"}])
    failed = parses[24]
    fail(api, failed, "ValueError: line 17 of part-024.csv has 9 columns, expected 8")
    return run_id, failed["state_id"]


def shoot(page: Page, path: str, name: str, full: bool = False) -> None:
    page.goto(path)
    page.wait_for_timeout(700)  # let the live graph connect
    page.screenshot(path=str(OUT / name), full_page=full)
    print("wrote", OUT / name)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory, ServerProcess(sqlite_url(Path(directory))) as server:
        api = httpx.Client(base_url=f"{server.url}/v0/namespace/{NS}", headers={"x-api-key": server.api_key})
        run_id, failed_id = sample_data(api)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(ensure_chromium()), args=CHROMIUM_ARGS)
            page = browser.new_page(base_url=server.url, viewport={"width": 1280, "height": 860})
            shoot(page, "/dashboard/login", "dashboard-login.png")
            page.fill("#api-key", server.api_key)
            page.click("#login")
            shoot(page, "/dashboard/", "dashboard-namespaces.png")
            shoot(page, f"/dashboard/ns/{NS}", "dashboard-templates.png")
            shoot(page, f"/dashboard/ns/{NS}/graphs/nightly-ingest", "dashboard-template.png", full=True)
            shoot(page, f"/dashboard/ns/{NS}/graphs/half-done", "dashboard-template-invalid.png")
            shoot(page, f"/dashboard/ns/{NS}/runs", "dashboard-runs.png")
            page.goto(f"/dashboard/ns/{NS}/runs/{run_id}")
            page.locator('g.node[data-node="parse"]').click()
            page.wait_for_selector("#node-states tbody tr")
            page.wait_for_selector("svg#timeline rect.bar")
            page.screenshot(path=str(OUT / "dashboard-run.png"))  # the viewport: graph and the first states
            print("wrote", OUT / "dashboard-run.png")
            page.locator("#timeline-card").screenshot(path=str(OUT / "dashboard-timeline.png"))
            print("wrote", OUT / "dashboard-timeline.png")
            shoot(page, f"/dashboard/ns/{NS}/states/{failed_id}", "dashboard-state.png", full=True)
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
