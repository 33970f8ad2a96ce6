"""Usage reported with results, on SQLite and PostgreSQL, with real runtimes.

Users rely on: what a node reports with `report_usage` (several calls adding up) reaches the server
with its result and is kept with that attempt, a failed attempt's too; a result batch carries each
item's usage; bad usage is a 422 naming the field; results without usage (the published client) are
taken as before.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess

from tests.blackbox.helpers import by_identifier, claim_all, node, register, run, states, trigger, upsert
from tests.cli.conftest import Cli

Runtimes = Callable[[], subprocess.Popen[bytes]]
ASK_INPUTS = {
    "question": "${{ store.question }}",
    "tokens_in": "${{ store.tokens_in }}",
    "tokens_out": "${{ store.tokens_out }}",
    "cost": "${{ store.cost }}",
}
STORE = {"question": "why", "tokens_in": "100", "tokens_out": "20", "cost": "0.25"}


def ask_graph(api: httpx.Client, namespace: str, graph: str = "ask", **extra: Any) -> None:
    register(api, {"Ask": (tuple(ASK_INPUTS), ("answer",)), "Shaky": (("answer",), ("checked",))})
    upsert(
        api,
        graph,
        [
            node("ask", "Ask", namespace, ASK_INPUTS, ["shaky"]),
            node("shaky", "Shaky", namespace, {"answer": "${{ ask.outputs.answer }}"}),
        ],
        **{
            "retry_policy": {"max_retries": 1, "strategy": "FIXED", "backoff_factor": 1},
            "store_config": {"required_keys": list(STORE)},
            **extra,
        },
    )


def finished(api: httpx.Client, run_id: str) -> dict[str, Any]:
    for _ in range(120):
        body = run(api, run_id, wait_ms=1000)
        if body["finished"]:
            return body
    pytest.fail(f"run {run_id} did not finish")


def test_each_attempt_keeps_the_usage_its_runtime_reported(
    api: httpx.Client, namespace: str, runtimes: Runtimes
) -> None:
    ask_graph(api, namespace)
    runtimes()
    run_id = trigger(api, "ask", store=STORE)
    assert finished(api, run_id)["status"] == "SUCCESS"
    found = states(api, run_id)
    [ask] = by_identifier(found, "ask")
    assert ask["usage"] == {"input_tokens": 100, "output_tokens": 20, "requests": 1, "cost_usd": 0.25}
    attempts = sorted(by_identifier(found, "shaky"), key=lambda s: s["retry_count"])
    assert [s["status"] for s in attempts] == ["RETRY_CREATED", "SUCCESS"]
    assert attempts[0]["error"] == "RuntimeError: the provider answered nonsense"
    for attempt in attempts:  # the failed attempt's usage came with its error
        assert attempt["usage"] == {"input_tokens": 10, "output_tokens": 1, "requests": 1, "cost_usd": 0.5}


def test_usage_adds_up_per_node_and_per_run_in_every_run_read(
    api: httpx.Client, namespace: str, runtimes: Runtimes, server: ServerProcess
) -> None:
    ask_graph(api, namespace, "sum")
    runtimes()
    run_id = trigger(api, "sum", store=STORE)
    finished(api, run_id)
    ask = {"input_tokens": 100, "output_tokens": 20, "requests": 1, "cost_usd": 0.25}
    shaky = {"input_tokens": 20, "output_tokens": 2, "requests": 2, "cost_usd": 1.0}  # both attempts
    whole = {"input_tokens": 120, "output_tokens": 22, "requests": 3, "cost_usd": 1.25}
    assert run(api, run_id)["usage"] == whole
    [listed] = [r for r in api.get("/runs/1/10").json()["runs"] if r["run_id"] == run_id]
    assert listed["usage"] == whole
    progress = api.get(f"/run/{run_id}/progress").json()
    assert progress["usage"] == whole
    assert {n["identifier"]: n["usage"] for n in progress["nodes"]} == {"ask": ask, "shaky": shaky}
    metrics = httpx.get(server.url + "/metrics", headers={"x-api-key": server.api_key}).text
    labels = f'graph="sum",namespace="{namespace}",node="Shaky"'
    assert f"exosphere_usage_input_tokens_total{{{labels}}} 20.0" in metrics
    assert f"exosphere_usage_output_tokens_total{{{labels}}} 2.0" in metrics
    assert f"exosphere_usage_requests_total{{{labels}}} 2.0" in metrics
    assert f"exosphere_usage_cost_usd_total{{{labels}}} 1.0" in metrics


def test_usage_survives_a_manual_retry_of_a_failed_state(api: httpx.Client, namespace: str) -> None:
    ask_graph(api, namespace, "manual", retry_policy={"max_retries": 0})
    run_id = trigger(api, "manual", store=STORE)
    [state] = claim_all(api, "Ask", count=1)
    response = api.post(
        f"/state/{state['state_id']}/errored",
        json={"error": "e", "lease_id": state["lease_id"], "usage": {"input_tokens": 5, "cost_usd": 0.1}},
    )
    assert response.status_code == 200, response.text
    assert run(api, run_id)["usage"]["input_tokens"] == 5
    retried = api.post(f"/state/{state['state_id']}/manual-retry", json={"fanout_id": "again"})
    assert retried.status_code == 200, retried.text
    # The failed attempt moved to RETRY_CREATED; what it used is still the run's.
    assert run(api, run_id)["usage"] == {"input_tokens": 5, "output_tokens": 0, "requests": 0, "cost_usd": 0.1}


def test_a_result_batch_carries_each_items_usage(api: httpx.Client, namespace: str) -> None:
    ask_graph(api, namespace, "batch")
    runs = [trigger(api, "batch", store=STORE) for _ in range(2)]
    claimed = claim_all(api, "Ask", count=2)
    body = {
        "results": [
            {
                "state_id": s["state_id"],
                "lease_id": s["lease_id"],
                "outputs": [{"answer": "a"}],
                "usage": {"output_tokens": 7 + i},
            }
            for i, s in enumerate(claimed)
        ]
    }
    response = api.post("/states/executed", json=body)
    assert response.status_code == 200, response.text
    usages = {s["state_id"]: s["usage"] for run_id in runs for s in by_identifier(states(api, run_id), "ask")}
    assert usages == {s["state_id"]: {"output_tokens": 7 + i} for i, s in enumerate(claimed)}


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"requests": 10**13}, "requests"),
        ({"output_tokens": "many"}, "output_tokens"),
        ({"cost_usd": -0.01}, "cost_usd"),
    ],
)
def test_bad_usage_is_refused_naming_the_field(
    api: httpx.Client, namespace: str, usage: dict[str, Any], field: str
) -> None:
    ask_graph(api, namespace, "bad")
    run_id = trigger(api, "bad", store=STORE)
    [state] = claim_all(api, "Ask", count=1)
    for endpoint, body in (("executed", {"outputs": [{"answer": "a"}]}), ("errored", {"error": "e"})):
        response = api.post(
            f"/state/{state['state_id']}/{endpoint}", json={**body, "lease_id": state["lease_id"], "usage": usage}
        )
        assert response.status_code == 422, response.text
        assert field in response.text
    [kept] = by_identifier(states(api, run_id), "ask")
    assert kept["status"] == "QUEUED" and kept["usage"] is None


def test_a_cost_that_is_not_a_number_is_refused(api: httpx.Client, namespace: str) -> None:
    ask_graph(api, namespace, "nan")
    trigger(api, "nan", store=STORE)
    [state] = claim_all(api, "Ask", count=1)
    lease = state["lease_id"]
    content = '{"outputs": [{"answer": "a"}], "lease_id": "' + lease + '", "usage": {"cost_usd": NaN}}'
    response = api.post(
        f"/state/{state['state_id']}/executed", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "cost_usd" in response.text


def test_results_without_usage_are_taken_as_before(api: httpx.Client, namespace: str) -> None:
    ask_graph(api, namespace, "plain")
    run_id = trigger(api, "plain", store=STORE)
    [state] = claim_all(api, "Ask", count=1)
    response = api.post(
        f"/state/{state['state_id']}/executed", json={"outputs": [{"answer": "a"}], "lease_id": state["lease_id"]}
    )
    assert response.status_code == 200, response.text
    [kept] = by_identifier(states(api, run_id), "ask")
    assert kept["status"] == "SUCCESS" and kept["usage"] is None


def test_run_show_prints_the_runs_usage_per_attempt_and_per_node(
    api: httpx.Client, namespace: str, runtimes: Runtimes, cli: Cli
) -> None:
    ask_graph(api, namespace, "shown")
    runtimes()
    run_id = trigger(api, "shown", store=STORE)
    finished(api, run_id)
    shown = cli("run", "show", run_id)
    assert shown.code == 0, shown
    assert "usage: 120 in + 22 out tokens, 3 requests, $1.25" in shown.stdout
    assert "used 100 in + 20 out tokens, 1 request, $0.25" in shown.stdout  # the attempt of `ask`
    [ask_row] = [line for line in shown.stdout.splitlines() if line.lstrip("│ ").startswith("ask (Ask)")]
    assert [cell.strip() for cell in ask_row.split("│")[1:-1]] == ["ask (Ask)", "100", "20", "1", "$0.25"]
    [total] = [line for line in shown.stdout.splitlines() if line.lstrip("│ ").startswith("total")]
    assert [cell.strip() for cell in total.split("│")[1:-1]] == ["total", "120", "22", "3", "$1.25"]
