"""Budgets, on SQLite and PostgreSQL.

Users rely on: a run whose attempts report more tokens or dollars than its budget (the trigger's, else
the graph's) is cancelled with the reason `budget exceeded` at the result that takes it over; its
waiting states end CANCELLED at once, states already executing finish and their usage counts, and
nothing they would start runs; a bad budget is a 422 naming the field.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess
from exospherehost import StateManager

from tests.blackbox.helpers import by_identifier, claim, claim_all, node, register, run, states, trigger, upsert
from tests.usage.test_usage import STORE, ask_graph, finished

Runtimes = Callable[[], subprocess.Popen[bytes]]


def _fan_graph(api: httpx.Client, namespace: str, graph: str, **extra: Any) -> None:
    """fan -> ask (one per fan output) -> check: claimed and reported by hand."""
    register(api, {"Fan": ((), ("n",)), "Ask": (("n",), ("answer",)), "Check": (("answer",), ("ok",))})
    upsert(
        api,
        graph,
        [
            node("fan", "Fan", namespace, {}, ["ask"]),
            node("ask", "Ask", namespace, {"n": "${{ fan.outputs.n }}"}, ["check"]),
            node("check", "Check", namespace, {"answer": "${{ ask.outputs.answer }}"}),
        ],
        **extra,
    )


def _report(api: httpx.Client, state: dict[str, Any], usage: dict[str, Any]) -> httpx.Response:
    return api.post(
        f"/state/{state['state_id']}/executed",
        json={"outputs": [{"answer": "a"}], "lease_id": state["lease_id"], "usage": usage},
    )


def test_a_run_over_budget_cancels_what_waits_and_lets_executing_states_finish(
    api: httpx.Client, namespace: str
) -> None:
    _fan_graph(api, namespace, "fan")
    run_id = trigger(api, "fan", budget={"tokens": 100})
    assert run(api, run_id)["budget"] == {"tokens": 100}
    [root] = claim_all(api, "Fan", count=1)
    done = api.post(
        f"/state/{root['state_id']}/executed",
        json={"outputs": [{"n": str(i)} for i in range(3)], "lease_id": root["lease_id"]},
    )
    assert done.status_code == 200, done.text
    first, second = claim_all(api, "Ask", count=2)  # the third stays CREATED

    over = _report(api, first, {"input_tokens": 90, "output_tokens": 20})  # 110 tokens > 100
    assert over.status_code == 200, over.text
    summary = run(api, run_id)
    assert summary["cancel_reason"] == "budget exceeded"
    assert summary["status"] == "PENDING"  # `second` still executes
    asks = by_identifier(states(api, run_id), "ask")
    assert sorted(s["status"] for s in asks) == ["CANCELLED", "QUEUED", "SUCCESS"]
    [check] = by_identifier(states(api, run_id), "check")
    assert check["status"] == "CANCELLED"  # made by the result that went over, cancelled with it

    beat = api.post(f"/state/{second['state_id']}/heartbeat", json={"lease_id": second["lease_id"]})
    assert beat.status_code == 200, beat.text  # not told to stop: it finishes
    late = _report(api, second, {"input_tokens": 30, "cost_usd": 0.2})
    assert late.status_code == 200, late.text
    summary = run(api, run_id)
    assert summary["status"] == "CANCELLED" and summary["finished"]
    assert summary["usage"] == {"input_tokens": 120, "output_tokens": 20, "requests": 0, "cost_usd": 0.2}
    assert sorted(s["status"] for s in by_identifier(states(api, run_id), "check")) == ["CANCELLED", "CANCELLED"]
    assert claim(api, "Ask", "Check") == []


def test_a_failed_attempt_over_budget_is_not_retried(api: httpx.Client, namespace: str) -> None:
    ask_graph(api, namespace, "retry", retry_policy={"max_retries": 3, "strategy": "FIXED", "backoff_factor": 1})
    run_id = trigger(api, "retry", store=STORE, budget={"cost_usd": 1})
    [state] = claim_all(api, "Ask", count=1)
    failed = api.post(
        f"/state/{state['state_id']}/errored",
        json={"error": "e", "lease_id": state["lease_id"], "usage": {"cost_usd": 1.01}},
    )
    assert failed.status_code == 200, failed.text
    summary = run(api, run_id)
    assert summary["status"] == "CANCELLED" and summary["cancel_reason"] == "budget exceeded"
    assert sorted(s["status"] for s in states(api, run_id)) == ["CANCELLED", "RETRY_CREATED"]


def test_within_budget_a_run_goes_on_and_the_graph_default_applies(api: httpx.Client, namespace: str) -> None:
    _fan_graph(api, namespace, "roomy", budget={"tokens": 1000})
    assert api.get("/graph/roomy").json()["budget"] == {"tokens": 1000}
    run_id = trigger(api, "roomy")
    assert run(api, run_id)["budget"] == {"tokens": 1000}
    assert run(api, trigger(api, "roomy", budget={"cost_usd": 5}))["budget"] == {"cost_usd": 5.0}
    [root] = claim_all(api, "Fan", count=1)
    api.post(f"/state/{root['state_id']}/executed", json={"outputs": [{"n": "1"}], "lease_id": root["lease_id"]})
    [ask] = claim_all(api, "Ask", count=1)
    assert _report(api, ask, {"input_tokens": 1000}).status_code == 200  # exactly the budget: not over it
    assert run(api, run_id)["cancel_reason"] is None
    assert by_identifier(states(api, run_id), "check")[0]["status"] == "CREATED"


def test_a_real_runtime_s_run_is_cancelled_when_its_cost_passes_the_budget(
    api: httpx.Client, namespace: str, runtimes: Runtimes
) -> None:
    ask_graph(api, namespace, "costly")
    runtimes()
    run_id = trigger(api, "costly", store=STORE, budget={"cost_usd": 0.1})  # Ask reports $0.25
    summary = finished(api, run_id)
    assert summary["status"] == "CANCELLED" and summary["cancel_reason"] == "budget exceeded"
    assert summary["usage"]["cost_usd"] == 0.25
    [ask] = by_identifier(states(api, run_id), "ask")
    assert ask["status"] == "SUCCESS"
    assert [s["status"] for s in by_identifier(states(api, run_id), "shaky")] == ["CANCELLED"]


@pytest.mark.parametrize(
    ("budget", "field"),
    [({}, "budget"), ({"tokens": 0}, "tokens"), ({"cost_usd": -1}, "cost_usd"), ({"tokens": "lots"}, "tokens")],
)
def test_a_bad_budget_is_refused_naming_the_field(
    api: httpx.Client, namespace: str, budget: dict[str, Any], field: str
) -> None:
    ask_graph(api, namespace, "bad")
    response = api.post("/graph/bad/trigger", json={"store": STORE, "budget": budget})
    assert response.status_code == 422, response.text
    assert field in response.text


def test_the_python_state_manager_sends_priority_and_budget(
    api: httpx.Client, namespace: str, server: ServerProcess
) -> None:
    ask_graph(api, namespace, "sdk")

    async def go() -> dict[str, Any]:
        async with StateManager(namespace, server.url, server.api_key) as sm:
            started = await sm.trigger("sdk", store=STORE, priority=3, budget={"tokens": 50, "cost_usd": 0.5})
            return await sm.get_run(started["run_id"])

    summary = asyncio.run(go())
    assert summary["priority"] == 3
    assert summary["budget"] == {"tokens": 50, "cost_usd": 0.5}


def test_a_cancel_by_hand_stops_what_a_budget_cancel_let_finish(api: httpx.Client, namespace: str) -> None:
    _fan_graph(api, namespace, "stop")
    run_id = trigger(api, "stop", budget={"tokens": 10})
    [root] = claim_all(api, "Fan", count=1)
    api.post(
        f"/state/{root['state_id']}/executed",
        json={"outputs": [{"n": "1"}, {"n": "2"}, {"n": "3"}], "lease_id": root["lease_id"]},
    )
    first, second = claim_all(api, "Ask", count=2)
    assert _report(api, first, {"output_tokens": 11}).status_code == 200
    cancelled = api.post(f"/run/{run_id}/cancel", json={"reason": "enough"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["reason"] == "budget exceeded"  # the first reason stays
    assert run(api, run_id)["status"] == "CANCELLED"
    assert _report(api, second, {"output_tokens": 1}).status_code == 409
