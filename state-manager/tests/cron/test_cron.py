"""Cron triggers over HTTP (PROTOCOL §10.2, with D17–D20 fixed): UTC, no orphan schedules, one firing
per occurrence across replicas, a default trigger store for graphs with required keys.

Expressions use croniter's 6-field form whose LAST field is seconds: "* * * * * *" fires every second.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess

from ..blackbox.helpers import node, register, states, upsert

EVERY_SECOND = "* * * * * *"


def cron(expression: str = EVERY_SECOND, **extra: Any) -> dict[str, Any]:
    return {"type": "CRON", "value": {"expression": expression, **extra}}


def client(server: ServerProcess, namespace: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=30
    )


def runs_of(api: httpx.Client, graph: str) -> list[dict[str, Any]]:
    response = api.get("/runs/1/1000", params={"graph_name": graph})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["runs"]
    return found


def wait_for_runs(api: httpx.Client, graph: str, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = runs_of(api, graph)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def created_at(run: dict[str, Any]) -> datetime:
    """Run timestamps are ISO-8601 without an offset, in UTC (PROTOCOL §1.3)."""
    return datetime.fromisoformat(run["created_at"]).replace(tzinfo=UTC)


def tick_graph(
    api: httpx.Client, namespace: str, graph: str = "tick", triggers: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A one-node graph; with `triggers` given it is scheduled."""
    return upsert(api, graph, [node("tick", "Tick", namespace)], triggers=triggers or [])


@pytest.fixture
def unschedule(api: httpx.Client, namespace: str) -> Iterator[list[str]]:
    """Graphs named here lose their triggers at the end, so no test leaves a per-second schedule behind."""
    graphs: list[str] = []
    yield graphs
    for graph in graphs:
        tick_graph(api, namespace, graph)


def test_a_per_second_cron_starts_runs_by_itself(api: httpx.Client, namespace: str, unschedule: list[str]) -> None:
    register(api, {"Tick": ((), ("y",))})
    unschedule.append("tick")
    body = tick_graph(api, namespace, "tick", [cron()])
    assert body["validation_status"] == "VALID"
    assert body["triggers"][0]["value"]["expression"] == EVERY_SECOND
    started = datetime.now(UTC)
    found = wait_for_runs(api, "tick", 3)
    assert len(found) >= 3, found
    for run in found:
        assert run["graph_name"] == "tick"
        # Times are UTC: a run fired just now carries a UTC timestamp of just now.
        assert started - timedelta(seconds=2) <= created_at(run) <= datetime.now(UTC) + timedelta(seconds=2), run
    # Each run has its root state, ready for a runtime.
    [root] = states(api, found[0]["run_id"])
    assert root["identifier"] == "tick" and root["node_name"] == "Tick"


def test_removing_the_trigger_stops_firing(api: httpx.Client, namespace: str, unschedule: list[str]) -> None:
    unschedule.append("tick")
    tick_graph(api, namespace, "tick", [cron()])
    assert len(wait_for_runs(api, "tick", 2)) >= 2
    body = tick_graph(api, namespace, "tick")  # re-upsert without triggers
    assert body["triggers"] == []
    # Everything that commits after the upsert answered would be an orphan schedule firing (D18).
    before = len(runs_of(api, "tick"))
    time.sleep(3)
    assert len(runs_of(api, "tick")) == before


def test_changing_the_expression_replaces_the_schedule(
    api: httpx.Client, namespace: str, unschedule: list[str]
) -> None:
    unschedule.append("tick")
    tick_graph(api, namespace, "tick", [cron()])
    assert len(wait_for_runs(api, "tick", 1)) >= 1
    # Once a year, at a fixed second: the old per-second schedule must be gone.
    tick_graph(api, namespace, "tick", [cron("0 0 1 1 * 0")])
    before = len(runs_of(api, "tick"))
    time.sleep(2.5)
    assert len(runs_of(api, "tick")) == before
    assert api.get("/graph/tick").json()["triggers"][0]["value"]["expression"] == "0 0 1 1 * 0"


def test_a_trigger_store_satisfies_required_keys(api: httpx.Client, namespace: str, unschedule: list[str]) -> None:
    """D20: upstream fires with an empty body, so graphs with required store keys always fail."""
    register(api, {"Greet": (("name",), ("y",))})
    unschedule.append("greet")
    body = upsert(
        api,
        "greet",
        [node("greet", "Greet", namespace, {"name": "${{ store.who }}"})],
        store_config={"required_keys": ["who"], "default_values": {}},
        triggers=[cron(store={"who": "cron-user"})],
    )
    assert body["validation_status"] == "VALID", body
    assert body["triggers"][0]["value"]["store"] == {"who": "cron-user"}
    assert api.get("/graph/greet").json()["triggers"][0]["value"]["store"] == {"who": "cron-user"}
    found = wait_for_runs(api, "greet", 2)
    assert len(found) >= 2, found
    for run in found:
        [root] = states(api, run["run_id"])
        assert root["inputs"] == {"name": "cron-user"}, root


def test_a_trigger_that_cannot_supply_the_required_store_is_refused_at_upsert(
    api: httpx.Client, namespace: str
) -> None:
    """Each firing of such a trigger would fail with only a server log line: refuse it when it is written."""
    register(api, {"Greet": (("name",), ("y",))})
    nodes = [node("greet", "Greet", namespace, {"name": "${{ store.who }}-${{ store.where }}"})]
    store_config = {"required_keys": ["who", "where"], "default_values": {"where": "here"}}
    response = api.put(
        "/graph/greet",
        json={"secrets": {}, "nodes": nodes, "store_config": store_config, "triggers": [cron("0 * * * *")]},
    )
    assert response.status_code == 400, response.text
    assert response.json() == {
        "detail": "Error validating graph template: Cron trigger '0 * * * *' gives no value for required "
        "store key(s) 'who': set them in the trigger's store or in store_config.default_values"
    }
    assert api.get("/graph/greet").status_code == 404


def test_required_store_keys_may_come_from_the_trigger_or_the_defaults(
    api: httpx.Client, namespace: str, unschedule: list[str]
) -> None:
    register(api, {"Greet": (("name",), ("y",))})
    unschedule.append("greet")
    nodes = [node("greet", "Greet", namespace, {"name": "${{ store.who }}-${{ store.where }}"})]
    store_config = {"required_keys": ["who", "where"], "default_values": {"where": "here"}}
    body = upsert(api, "greet", nodes, store_config=store_config, triggers=[cron("0 * * * *", store={"who": "me"})])
    assert body["validation_status"] == "VALID", body
    store_config["default_values"] = {"who": "you", "where": "here"}
    assert upsert(api, "greet", nodes, store_config=store_config, triggers=[cron("0 * * * *")])["version"] == 2


def test_invalid_expressions_are_refused(api: httpx.Client, namespace: str) -> None:
    for expression in ("not cron", "", "61 * * * *", "0 0 31 2 *", "R * * * *"):
        response = api.put(
            "/graph/bad",
            json={"secrets": {}, "nodes": [node("tick", "Tick", namespace)], "triggers": [cron(expression)]},
        )
        assert response.status_code == 422, (expression, response.text)
        assert response.headers["content-type"].startswith("application/json")
    assert api.get("/graph/bad").status_code == 404


def test_namespaces_do_not_share_schedules(
    server: ServerProcess, api: httpx.Client, namespace: str, unschedule: list[str]
) -> None:
    """D17: upserting graph "tick" in namespace B must not touch the schedule of "tick" in namespace A."""
    register(api, {"Tick": ((), ("y",))})
    unschedule.append("tick")
    tick_graph(api, namespace, "tick", [cron()])
    assert len(wait_for_runs(api, "tick", 1)) >= 1
    other = namespace + "-b"
    with client(server, other) as api_b:
        tick_graph(api_b, other, "tick")  # same graph name, no triggers
        tick_graph(api_b, other, "tick")  # twice: an update too
        before = len(runs_of(api, "tick"))
        time.sleep(2.5)
        assert len(runs_of(api, "tick")) >= before + 1, "namespace A's cron stopped after an upsert in B"
        assert runs_of(api_b, "tick") == []


def test_cron_fires_in_utc_whatever_the_host_zone(make_server: Callable[..., ServerProcess], namespace: str) -> None:
    """D19: an expression bound to the current UTC hour fires on a host whose local time is UTC+14."""
    server = make_server(env={"TZ": "Pacific/Kiritimati"})
    hour = datetime.now(UTC).hour
    # The current and next UTC hour (so the test holds across an hour boundary); local hours are 14 away.
    expression = f"* {hour},{(hour + 1) % 24} * * * *"
    with client(server, namespace) as api:
        tick_graph(api, namespace, "utc", [cron(expression)])
        try:
            found = wait_for_runs(api, "utc", 2)
            assert len(found) >= 2, f"{expression} did not fire on a UTC+14 host"
            now = datetime.now(UTC)
            for run in found:
                assert abs(created_at(run) - now) < timedelta(seconds=15), run
        finally:
            tick_graph(api, namespace, "utc")


def test_two_replicas_fire_each_occurrence_once(
    backend: str, make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    if backend == "sqlite":
        pytest.skip("two processes on one SQLite file is not a supported deployment")
    first = make_server()
    second = make_server(database=first.database_url)
    with client(first, namespace) as api_a, client(second, namespace) as api_b:
        tick_graph(api_a, namespace, "dup", [cron()])
        try:
            started = time.monotonic()
            time.sleep(5)
            found = runs_of(api_b, "dup")
            elapsed = time.monotonic() - started
            seconds = Counter(created_at(r).replace(microsecond=0) for r in found)
            duplicates = {s: n for s, n in seconds.items() if n > 1}
            assert not duplicates, f"occurrences fired more than once: {duplicates}"
            assert 3 <= len(found) <= elapsed + 1, (len(found), elapsed)
            # A replica going away does not stop the schedule: the other one fires it.
            first.stop()
            before = len(runs_of(api_b, "dup"))
            time.sleep(3)
            later = runs_of(api_b, "dup")
            assert len(later) >= before + 2, "the surviving replica did not fire"
            seconds = Counter(created_at(r).replace(microsecond=0) for r in later)
            assert max(seconds.values()) == 1, seconds
        finally:
            tick_graph(api_b, namespace, "dup")


def test_cron_fired_runs_are_cancelled_like_any_other_and_carry_the_graph_deadline(
    api: httpx.Client, namespace: str, unschedule: list[str]
) -> None:
    register(api, {"Tick": ((), ("y",))})
    unschedule += ["tick", "tock"]
    tick_graph(api, namespace, "tick", [cron()])
    [fired, *_] = wait_for_runs(api, "tick", 1)
    tick_graph(api, namespace, "tick")  # no more firing
    answer = api.post(f"/run/{fired['run_id']}/cancel", json={"reason": "enough"})
    assert answer.json() == {
        "run_id": fired["run_id"],
        "status": "CANCELLED",
        "cancelled_states": 1,
        "reason": "enough",
    }

    upsert(api, "tock", [node("tick", "Tick", namespace)], triggers=[cron()], deadline_seconds=0.5)
    [late, *_] = wait_for_runs(api, "tock", 1)
    tick_graph(api, namespace, "tock")
    summary = api.get(f"/run/{late['run_id']}", params={"wait_ms": 30_000}).json()
    assert summary["status"] == "CANCELLED" and summary["cancel_reason"] == "deadline exceeded", summary
