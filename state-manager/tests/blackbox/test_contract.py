"""Every route's real answers are exactly the model it declares in `exospherehost.contract`.

One scenario drives every route of the running server (graphs, runs, claims, every completion,
inspection, `/health`) and keeps each answer. Then, per route of the app, each answer must parse as
the route's declared model, carry no key the model lacks, and come back unchanged from the model:
so `/openapi.json`, the generated TypeScript types and the SDK's parsing all describe the wire as it is.
A route added without a model, or not driven by the scenario, fails here too.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import httpx
import pytest
from exosphere_server.openapi_document import openapi_document
from exosphere_testing import ServerProcess
from exospherehost import contract
from pydantic import BaseModel

from .helpers import string_schema

Answers = dict[tuple[str, str], list[Any]]


def api_routes() -> dict[tuple[str, str], type[BaseModel]]:
    """(method, path template) of every operation of `/openapi.json`, with the contract model of its answer."""
    routes: dict[tuple[str, str], type[BaseModel]] = {}
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            [answer] = [a for code, a in operation["responses"].items() if code.startswith("2")]
            if "text/event-stream" in answer["content"]:
                continue  # the run's event stream: the SDK parses each event as contract.RunEvent (test_watch_run.py)
            if "text/plain" in answer["content"]:
                continue  # one value as its text, no JSON: tests/payloads/test_large_payloads.py reads it
            name = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            model = getattr(contract, name, None)
            assert isinstance(model, type) and issubclass(model, BaseModel), (
                f"{path} answers {name}, not a contract model"
            )
            routes[(method.upper(), path)] = model
    return routes


ROUTES = api_routes()


class Recorder:
    """Calls routes by their path template and keeps every answer under that template."""

    def __init__(self, server: ServerProcess, namespace: str) -> None:
        self.client = httpx.Client(base_url=server.url, headers={"x-api-key": server.api_key}, timeout=30)
        self.namespace = namespace
        self.answers: Answers = defaultdict(list)

    def call(self, method: str, template: str, *, expect: int = 200, **options: Any) -> Any:
        path_values = {k: options.pop(k) for k in list(options) if "{" + k + "}" in template}
        path = template.format(namespace_name=self.namespace, **path_values)
        response = self.client.request(method, path, **options)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        body = response.json()
        self.answers[(method, template)].append(body)
        return body


NS = "/v0/namespace/{namespace_name}"
STATE = NS + "/state/{state_id}"


def drive_every_route(r: Recorder) -> None:
    ns = r.namespace
    r.call("GET", "/health")
    nodes = [
        {
            "name": "Root",
            "inputs_schema": string_schema("text"),
            "outputs_schema": string_schema("out"),
            "secrets": ["tok"],
        },
        {"name": "Leaf", "inputs_schema": string_schema("x"), "outputs_schema": string_schema("y"), "secrets": []},
    ]
    r.call("PUT", NS + "/nodes/", json={"runtime_name": "contract-test", "nodes": nodes})
    r.call("GET", NS + "/nodes/")
    r.call("GET", "/v0/namespaces")

    graph = {
        "secrets": {"tok": "s3cret"},
        "nodes": [
            {
                "node_name": "Root",
                "namespace": ns,
                "identifier": "root",
                "inputs": {"text": "${{ store.text }}"},
                "next_nodes": ["leaf"],
            },
            {"node_name": "Leaf", "namespace": ns, "identifier": "leaf", "inputs": {"x": "${{ root.outputs.out }}"}},
        ],
        "retry_policy": {"max_retries": 1, "strategy": "FIXED", "backoff_factor": 1},
        "store_config": {"required_keys": [], "default_values": {"text": "t"}},
        "triggers": [{"type": "CRON", "value": {"expression": "0 3 * * *", "store": {"text": "from cron"}}}],
    }
    assert (
        r.call("PUT", NS + "/graph/{graph_name}", graph_name="g", json=graph, expect=201)["validation_status"]
        == "VALID"
    )
    r.call("GET", NS + "/graph/{graph_name}", graph_name="g")
    r.call("GET", NS + "/graphs/")

    run_ids = [r.call("POST", NS + "/graph/{graph_name}/trigger", graph_name="g", json={})["run_id"] for _ in range(10)]
    claimed = claim(r, "Root", 10)
    r.call("POST", NS + "/states/enqueue", json={"nodes": ["Nobody"], "batch_size": 1})  # an empty claim
    keyed = {"idempotency_key": "contract"}
    r.call("POST", NS + "/graph/{graph_name}/trigger-many", graph_name="g", json={"runs": [keyed, keyed]})
    fan_out, batched, failed, pruned, later, released, kept, waiting, early, limited = claimed

    def lease(state: dict[str, Any]) -> dict[str, Any]:
        return {"state_id": state["state_id"], "lease_id": state["lease_id"]}

    r.call("GET", STATE + "/secrets", state_id=kept["state_id"])
    r.call("POST", STATE + "/heartbeat", state_id=kept["state_id"], json={"lease_id": kept["lease_id"]})
    stream = {"lease_id": kept["lease_id"], "offset": 0}
    r.call("POST", STATE + "/stream", state_id=kept["state_id"], params=stream, content=b'"live"\n')
    # Eager dispatch: the answer carries one of the two Leaf states this result creates.
    [eager_leaf] = r.call(
        "POST",
        STATE + "/executed",
        state_id=fan_out["state_id"],
        json={
            "outputs": [{"out": "a"}, {"out": "b"}],
            "lease_id": fan_out["lease_id"],
            "claim": {"nodes": ["Leaf"], "max": 1},
        },
    )["states"]
    results = [{**lease(batched), "outputs": [{"out": "c"}]}, {"state_id": "no-such-state", "outputs": []}]
    answer = r.call("POST", NS + "/states/executed", json={"results": results})
    assert [item.get("status_code") for item in answer["results"]] == [None, 404]
    r.call(
        "POST", STATE + "/errored", state_id=failed["state_id"], json={"error": "boom", "lease_id": failed["lease_id"]}
    )
    r.call(
        "POST", STATE + "/prune", state_id=pruned["state_id"], json={"data": {"why": 1}, "lease_id": pruned["lease_id"]}
    )
    r.call(
        "POST",
        STATE + "/re-enqueue-after",
        state_id=later["state_id"],
        json={"enqueue_after": 60_000, "lease_id": later["lease_id"]},
    )
    r.call("POST", STATE + "/release", state_id=released["state_id"], json={"lease_id": released["lease_id"]})

    # Named limits, and a provider's 429 that pauses one.
    limit = NS + "/limits/{name}"
    r.call("PUT", limit, name="openai", json={"requests_per_minute": 500, "tokens_per_minute": 90_000})
    r.call("PUT", limit, name="spare", json={"concurrency": 2})
    body = {"limit": "openai", "retry_after_seconds": 60, "lease_id": limited["lease_id"]}
    r.call("POST", STATE + "/rate-limited", state_id=limited["state_id"], json=body)
    assert r.call("GET", limit, name="openai")["paused_until"] is not None
    assert [item["name"] for item in r.call("GET", NS + "/limits")["limits"]] == ["openai", "spare"]
    r.call("DELETE", limit, name="spare")

    # Signals: one state waits and is woken; the other's signal was sent before it waited.
    signal = NS + "/run/{run_id}/signals/{name}"
    sent = r.call("POST", signal, run_id=state_run(r, early["state_id"]), name="approval", json={"ok": "early"})
    assert sent["woken"] == 0
    wait = {"name": "approval", "timeout_seconds": 3600}
    for state, status in ((waiting, "WAITING"), (early, "CREATED")):
        body = {**wait, "lease_id": state["lease_id"]}
        assert r.call("POST", STATE + "/wait-for-signal", state_id=state["state_id"], json=body)["status"] == status
    r.call("GET", STATE, state_id=waiting["state_id"])  # with what it waits for
    sent = r.call("POST", signal, run_id=state_run(r, waiting["state_id"]), name="approval", json={"ok": "yes"})
    assert sent["woken"] == 1

    # Leaves: one succeeds; one fails, then its retry fails for good and is retried by hand.
    leaves = [eager_leaf, *claim(r, "Leaf", 2)]
    r.call("POST", STATE + "/executed", state_id=leaves[0]["state_id"], json={"outputs": [{"y": "done"}]})
    r.call("POST", STATE + "/errored", state_id=leaves[1]["state_id"], json={"error": "first"})
    [retry] = claim(r, "Leaf", 1)
    assert (
        r.call("POST", STATE + "/errored", state_id=retry["state_id"], json={"error": "again"})["retry_created"]
        is False
    )
    r.call("POST", STATE + "/manual-retry", state_id=retry["state_id"], json={"fanout_id": uuid.uuid4().hex})

    # The run waiting for `later` is cancelled (twice: the same answer).
    cancelled = [r.call("POST", NS + "/run/{run_id}/cancel", run_id=state_run(r, later["state_id"])) for _ in "ab"]
    assert cancelled[0] == cancelled[1] and cancelled[0]["cancelled_states"] == 1
    for run_id in run_ids:
        r.call("GET", NS + "/run/{run_id}", run_id=run_id)
        r.call("GET", NS + "/run/{run_id}/states", run_id=run_id)
        r.call("GET", NS + "/run/{run_id}/progress", run_id=run_id)
        r.call("GET", NS + "/states/run/{run_id}/graph", run_id=run_id)
    r.call("GET", NS + "/states/run/{run_id}/graph", run_id="a-run-that-never-was")  # answered empty
    r.call("GET", NS + "/runs/{page}/{size}", page=1, size=10)
    r.call("GET", NS + "/runs/{page}/{size}", page=1, size=10, params={"status": "PENDING"})
    for state in (fan_out, pruned, kept):
        r.call("GET", STATE, state_id=state["state_id"])
        r.call(
            "GET",
            NS + "/graph/{graph_name}/run/{run_id}/node/{node_id}",
            graph_name="g",
            run_id=state_run(r, state["state_id"]),
            node_id=state["state_id"],
        )

    created = r.call("POST", "/v0/keys", json={"name": "contract", "role": "viewer", "namespace": ns})
    r.call("POST", "/v0/keys", json={"name": "contract-all", "role": "operator"})
    r.call("GET", "/v0/keys")
    r.call("DELETE", "/v0/keys/{key_id}", key_id=created["id"])
    r.call("GET", "/v0/audit", params={"limit": 5})


def claim(r: Recorder, node_name: str, count: int) -> list[dict[str, Any]]:
    claimed: list[dict[str, Any]] = []
    while len(claimed) < count:
        body = {"nodes": [node_name], "batch_size": count - len(claimed), "wait_ms": 1000}
        claimed += r.call("POST", NS + "/states/enqueue", json=body)["states"]
    return claimed


def state_run(r: Recorder, state_id: str) -> str:
    return str(r.client.get(STATE.format(namespace_name=r.namespace, state_id=state_id)).json()["run_id"])


@pytest.fixture(scope="module")
def answers(server: ServerProcess) -> Answers:
    recorder = Recorder(server, "contract-" + uuid.uuid4().hex[:8])
    with recorder.client:
        drive_every_route(recorder)
    return recorder.answers


def undeclared_keys(value: Any, where: str) -> list[str]:
    """Keys that a parsed answer kept without declaring them (the models accept unknown keys)."""
    if isinstance(value, BaseModel):
        found = [f"{where}.{key}" for key in value.__pydantic_extra__ or {}]
        for name in type(value).model_fields:
            found += undeclared_keys(getattr(value, name), f"{where}.{name}")
        return found
    if isinstance(value, list):
        return [key for index, item in enumerate(value) for key in undeclared_keys(item, f"{where}[{index}]")]
    if isinstance(value, dict):
        return [key for name, item in value.items() for key in undeclared_keys(item, f"{where}.{name}")]
    return []


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda route: f"{route[0]} {route[1]}")
def test_every_answer_is_exactly_the_declared_model(answers: Answers, route: tuple[str, str]) -> None:
    model = ROUTES[route]
    assert answers.get(route), f"the scenario never called {route[0]} {route[1]}: drive it in drive_every_route"
    for body in answers[route]:
        parsed = model.model_validate(body)
        assert undeclared_keys(parsed, model.__name__) == [], body
        # Nothing missing that the model would fill in, nothing changed on the way through it.
        assert parsed.model_dump(mode="json", by_alias=True) == body
