"""Priorities, on SQLite and PostgreSQL, claiming as a runtime would.

Users rely on: claims hand out higher priorities first, then older states; a trigger's priority beats
the graph's default, which beats 0; trigger-many carries one per run; eager dispatch follows the same
order; a low priority still runs while higher ones keep arriving (each point is one second of aging);
a bad priority is a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.blackbox.helpers import by_identifier, claim, run, states, trigger
from tests.cli.conftest import Cli
from tests.usage.test_usage import STORE, ask_graph


def _roots(api: httpx.Client, run_ids: list[str]) -> dict[str, str]:
    """The root (`ask`) state id of each run -> its run id."""
    return {by_identifier(states(api, r), "ask")[0]["state_id"]: r for r in run_ids}


def test_claims_take_higher_priority_first_then_older(api: httpx.Client, namespace: str) -> None:
    ask_graph(api, namespace, "order")
    named = {
        "normal": trigger(api, "order", store=STORE),
        "urgent": trigger(api, "order", store=STORE, priority=5),
        "urgent-later": trigger(api, "order", store=STORE, priority=5),
        "background": trigger(api, "order", store=STORE, priority=-3),
    }
    roots = _roots(api, list(named.values()))
    order = [roots[claim(api, "Ask", batch_size=1)[0]["state_id"]] for _ in named]
    assert order == [named["urgent"], named["urgent-later"], named["normal"], named["background"]]


def test_a_trigger_priority_beats_the_graph_default_which_beats_zero(api: httpx.Client, namespace: str) -> None:
    ask_graph(api, namespace, "plain")
    ask_graph(api, namespace, "defaulted", priority=7)
    assert api.get("/graph/defaulted").json()["priority"] == 7
    assert run(api, trigger(api, "plain", store=STORE))["priority"] == 0
    assert run(api, trigger(api, "defaulted", store=STORE))["priority"] == 7
    assert run(api, trigger(api, "defaulted", store=STORE, priority=-1))["priority"] == -1


def test_trigger_many_carries_a_priority_per_run(api: httpx.Client, namespace: str) -> None:
    ask_graph(api, namespace, "many")
    body = {"runs": [{"store": STORE, "priority": p} for p in (0, 3, 1)]}
    response = api.post("/graph/many/trigger-many", json=body)
    assert response.status_code == 200, response.text
    run_ids = [r["run_id"] for r in response.json()["runs"]]
    roots = _roots(api, run_ids)
    claimed = claim(api, "Ask", batch_size=3)
    assert [roots[s["state_id"]] for s in claimed] == [run_ids[1], run_ids[2], run_ids[0]]


def test_eager_dispatch_hands_out_the_highest_priority(api: httpx.Client, namespace: str) -> None:
    ask_graph(api, namespace, "eager")
    first = trigger(api, "eager", store=STORE, priority=100)
    [held] = claim(api, "Ask", batch_size=1)
    assert by_identifier(states(api, first), "ask")[0]["state_id"] == held["state_id"]
    low = trigger(api, "eager", store=STORE)
    high = trigger(api, "eager", store=STORE, priority=9)
    answer = api.post(
        f"/state/{held['state_id']}/executed",
        json={"outputs": [{"answer": "a"}], "lease_id": held["lease_id"], "claim": {"nodes": ["Ask"], "max": 1}},
    )
    assert answer.status_code == 200, answer.text
    [handed] = answer.json()["states"]
    assert handed["state_id"] == by_identifier(states(api, high), "ask")[0]["state_id"]
    assert by_identifier(states(api, low), "ask")[0]["status"] == "CREATED"


def test_a_low_priority_still_runs_while_higher_ones_keep_arriving(api: httpx.Client, namespace: str) -> None:
    """Aging: a state ready for longer than (difference in priority) seconds goes first. The test keeps one
    priority-2 run waiting at all times and claims one state at a time until the priority-0 run's turn comes."""
    ask_graph(api, namespace, "aging")
    low = trigger(api, "aging", store=STORE)
    low_root = by_identifier(states(api, low), "ask")[0]["state_id"]
    high_claimed = 0
    for _ in range(100_000):  # a bound, not a time: the turn comes after about two seconds of this
        trigger(api, "aging", store=STORE, priority=2)
        [state] = claim(api, "Ask", batch_size=1)
        if state["state_id"] == low_root:
            break
        high_claimed += 1
    else:
        pytest.fail("the low-priority run never got its turn")
    assert high_claimed > 0  # the higher priority did go first meanwhile


@pytest.mark.parametrize(
    ("body", "field"),
    [({"priority": 10**7}, "priority"), ({"priority": "high"}, "priority"), ({"priority": 1.5}, "priority")],
)
def test_a_bad_priority_is_refused_naming_the_field(
    api: httpx.Client, namespace: str, body: dict[str, Any], field: str
) -> None:
    ask_graph(api, namespace, "bad")
    response = api.post("/graph/bad/trigger", json={"store": STORE, **body})
    assert response.status_code == 422, response.text
    assert field in response.text
    graph = api.put("/graph/bad", json={"secrets": {}, "nodes": api.get("/graph/bad").json()["nodes"], **body})
    assert graph.status_code == 422, graph.text


def test_the_cli_triggers_with_a_priority_and_a_budget(api: httpx.Client, namespace: str, cli: Cli) -> None:
    ask_graph(api, namespace, "cli")
    args = ["trigger", "cli", "--store", "question=q", "--store", "tokens_in=1", "--store", "tokens_out=1"]
    started = cli(*args, "--store", "cost=0", "--priority", "0", "--budget-tokens", "500", "--budget-cost", "2.5")
    assert started.code == 0, started
    summary = run(api, started.stdout.strip())
    assert summary["priority"] == 0 and summary["budget"] == {"tokens": 500, "cost_usd": 2.5}
    shown = cli("run", "show", started.stdout.strip())
    assert shown.code == 0 and "budget 500 tokens, $2.50" in shown.stdout, shown
    refused = cli(*args, "--priority", "high")
    assert refused.code != 0 and "priority" in refused.stderr.lower()
