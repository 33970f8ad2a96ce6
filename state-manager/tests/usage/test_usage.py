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

from tests.blackbox.helpers import by_identifier, claim_all, node, register, run, states, trigger, upsert

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
        retry_policy={"max_retries": 1, "strategy": "FIXED", "backoff_factor": 1},
        store_config={"required_keys": list(STORE)},
        **extra,
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
