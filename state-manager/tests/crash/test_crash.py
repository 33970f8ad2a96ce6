"""Nothing lost: real processes killed with SIGKILL at the worst moments (DESIGN §2)."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from exosphere_testing import ServerProcess, wait_until

from ..blackbox.helpers import node, upsert

APP = Path(__file__).parent / "runtime_app.py"


def _graph(api: httpx.Client, namespace: str) -> None:
    upsert(
        api,
        "crash",
        [
            node("plan", "Plan", namespace, {"width": "${{ store.width }}"}, ["split"]),
            node("split", "Split", namespace, {"width": "${{ plan.outputs.width }}"}, ["work"]),
            node("work", "Work", namespace, {"item": "${{ split.outputs.item }}"}, ["merge"]),
            node("merge", "Merge", namespace, {"width": "${{ store.width }}"}, unites="plan"),
        ],
        store_config={"required_keys": ["width"]},
        retry_policy={"max_retries": 3, "strategy": "FIXED", "backoff_factor": 100},
    )


def _states(api: httpx.Client, run_id: str) -> list[dict[str, object]]:
    return list(api.get(f"/run/{run_id}/states").json()["states"])


def test_server_killed_mid_fan_out_loses_nothing_and_applies_each_result_once(
    server: ServerProcess, api: httpx.Client, namespace: str, runtimes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    runtimes(server, namespace)
    wait_until(lambda: api.get("/nodes/").json()["count"] == 4)
    _graph(api, namespace)
    width = 40
    run_id = api.post("/graph/crash/trigger", json={"store": {"width": str(width)}}).json()["run_id"]
    wait_until(lambda: sum(s["identifier"] == "work" and s["status"] == "SUCCESS" for s in _states(api, run_id)) >= 5)
    server.kill()  # mid fan-out: some branches done, some running, some waiting
    time.sleep(0.5)
    server.start()
    run = api.get(f"/run/{run_id}", params={"wait_ms": 60_000}, timeout=70).json()
    assert run["finished"] and run["status"] == "SUCCESS", run
    states = _states(api, run_id)
    work_items = Counter(s["inputs"]["item"] for s in states if s["identifier"] == "work" and s["status"] == "SUCCESS")
    assert work_items == Counter({str(i): 1 for i in range(width)})  # every branch, each result applied once
    assert [s["status"] for s in states if s["identifier"] == "merge"] == ["SUCCESS"]


def test_runtime_killed_mid_execute_state_runs_again_after_its_lease(
    server: ServerProcess,
    api: httpx.Client,
    namespace: str,
    runtimes: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    doomed = runtimes(server, namespace, "slow")
    wait_until(lambda: api.get("/nodes/").json()["count"] == 4)
    _graph(api, namespace)
    run_id = api.post("/graph/crash/trigger", json={"store": {"width": "1"}}).json()["run_id"]
    log = tmp_path / "executions.log"
    wait_until(lambda: log.exists() and "work 0" in log.read_text())
    doomed.kill()  # SIGKILL in the middle of `execute`
    doomed.wait()
    runtimes(server, namespace)
    run = api.get(f"/run/{run_id}", params={"wait_ms": 60_000}, timeout=70).json()
    assert run["finished"] and run["status"] == "SUCCESS", run
    work = [s for s in _states(api, run_id) if s["identifier"] == "work"]
    assert sorted(s["status"] for s in work) == ["RETRY_CREATED", "SUCCESS"]
    [expired] = [s for s in work if s["status"] == "RETRY_CREATED"]
    assert str(expired["error"]).startswith("Lease expired")
