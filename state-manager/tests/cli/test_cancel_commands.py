"""`exosphere run cancel` and `exosphere runs cancel`: runs that wait for a node nobody serves, cancelled."""

from __future__ import annotations

import httpx

from tests.blackbox.helpers import node, register, trigger, upsert

from .conftest import Cli


def _idle_graph(api: httpx.Client, namespace: str, graph: str) -> None:
    register(api, {"Idle": (("x",), ("y",))})
    upsert(
        api, graph, [node("idle", "Idle", namespace, {"x": "${{ store.x }}"})], store_config={"required_keys": ["x"]}
    )


def test_run_cancel_cancels_and_run_show_says_why(cli: Cli, api: httpx.Client, namespace: str) -> None:
    _idle_graph(api, namespace, "idle")
    run_id = trigger(api, "idle", store={"x": "1"})
    result = cli("run", "cancel", run_id, "--reason", "not needed")
    assert result.code == 0, result
    assert result.stdout.strip() == f"run {run_id} cancelled: 1 states"
    again = cli("run", "cancel", run_id, "--json")
    assert again.json() == {"run_id": run_id, "status": "CANCELLED", "cancelled_states": 1, "reason": "not needed"}
    shown = cli("run", "show", run_id)
    assert shown.code == 0 and "CANCELLED" in shown.stdout and "cancelled: not needed" in shown.stdout
    listed = cli("runs", "--status", "CANCELLED", "--json").json()
    assert [r["run_id"] for r in listed["runs"]] == [run_id]
    unknown = cli("run", "cancel", "no-such-run")
    assert unknown.code == 3 and "not found" in unknown.stderr


def test_runs_cancel_cancels_every_pending_run_of_one_graph(cli: Cli, api: httpx.Client, namespace: str) -> None:
    _idle_graph(api, namespace, "idle")
    _idle_graph(api, namespace, "other")
    mine = {trigger(api, "idle", store={"x": str(i)}) for i in range(3)}
    spared = trigger(api, "other", store={"x": "0"})
    result = cli("runs", "cancel", "--graph", "idle", "--status", "RUNNING")
    assert result.code == 0, result
    assert result.stdout.strip() == "3 runs of idle cancelled (3 states)"
    statuses = {r["run_id"]: r["status"] for r in cli("runs", "--json").json()["runs"]}
    assert statuses == {**dict.fromkeys(mine, "CANCELLED"), spared: "PENDING"}
    assert cli("runs", "cancel", "--graph", "idle").stdout.strip() == "0 runs of idle cancelled (0 states)"
    refused = cli("runs", "cancel", "--graph", "idle", "--status", "FAILED")
    assert refused.code == 2 and "only RUNNING (or PENDING)" in refused.stderr
