"""Large graph templates: validated off the event loop, bounded by a configurable node limit."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
from exosphere_testing import ServerProcess


def chain(namespace: str, count: int) -> list[dict[str, Any]]:
    """`count` nodes in a line, each reading its predecessor's output (the worst case for ancestor sets)."""
    return [
        {
            "node_name": "Step",
            "namespace": namespace,
            "identifier": f"n{i}",
            "inputs": {"x": f"${{{{ n{i - 1}.outputs.y }}}}"} if i else {"x": "start"},
            "next_nodes": [f"n{i + 1}"] if i < count - 1 else [],
            "unites": None,
        }
        for i in range(count)
    ]


def test_health_keeps_answering_while_a_100000_node_graph_is_upserted(
    make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    server = make_server(env={"EXOSPHERE_MAX_GRAPH_NODES": "100000"})
    body = {"secrets": {}, "nodes": chain(namespace, 100_000)}
    answer: dict[str, Any] = {}
    health_before_answer: list[int] = []

    def upsert() -> None:
        with httpx.Client(headers={"x-api-key": server.api_key}, timeout=600) as client:
            answer["response"] = client.put(f"{server.url}/v0/namespace/{namespace}/graph/big", json=body)

    worker = threading.Thread(target=upsert)
    worker.start()
    with httpx.Client(timeout=600) as probe:
        while worker.is_alive():
            status = probe.get(f"{server.url}/health").status_code
            if "response" not in answer:  # counted only while the upsert has not been answered
                health_before_answer.append(status)
    worker.join()

    response = answer["response"]
    assert response.status_code == 201, response.text[:500]
    created = response.json()
    assert created["validation_status"] == "VALID"
    assert created["validation_warnings"] == [
        f"Node Step in namespace {namespace} is not registered yet; its states wait until a runtime registers it"
    ]
    assert len(created["nodes"]) == 100_000
    assert len(health_before_answer) >= 5 and set(health_before_answer) == {200}


def test_a_graph_over_the_default_limit_is_a_422_naming_the_limit(api: httpx.Client, namespace: str) -> None:
    response = api.put("/graph/too-big", json={"secrets": {}, "nodes": chain(namespace, 10_001)})
    assert response.status_code == 422, response.text[:500]
    assert response.json() == {
        "detail": "The graph has 10001 nodes but this server accepts at most 10000 nodes per graph; "
        "raise the limit with the EXOSPHERE_MAX_GRAPH_NODES setting of the state manager"
    }
    assert api.get("/graph/too-big").status_code == 404
    assert api.put("/graph/at-limit", json={"secrets": {}, "nodes": chain(namespace, 10_000)}).status_code == 201


def test_a_changed_registration_revalidates_the_graphs_that_use_the_node(api: httpx.Client, namespace: str) -> None:
    def register(inputs: list[str]) -> None:
        properties = {name: {"type": "string"} for name in inputs}
        nodes = [
            {
                "name": name,
                "inputs_schema": {"type": "object", "properties": properties, "required": inputs},
                "outputs_schema": {"type": "object", "properties": {"y": {"type": "string"}}, "required": ["y"]},
                "secrets": [],
            }
            for name in ("Step", "Other")
        ]
        assert api.put("/nodes/", json={"runtime_name": "rt", "nodes": nodes}).status_code == 200

    register(["x"])
    created = api.put("/graph/g", json={"secrets": {}, "nodes": chain(namespace, 3)}).json()
    assert created["validation_status"] == "VALID"
    register(["x"])  # every runtime start registers again
    assert api.get("/graph/g").json()["validation_status"] == "VALID"
    register(["x", "z"])
    graph = api.get("/graph/g").json()
    assert graph["validation_status"] == "INVALID"
    assert any("Input 'z'" in error for error in graph["validation_errors"]), graph["validation_errors"]
