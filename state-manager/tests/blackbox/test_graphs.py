"""Graph templates over HTTP: validation, registration, secrets never shown."""

from __future__ import annotations

import httpx
from exosphere_testing import ServerProcess

from .helpers import node, register, upsert


def test_health_answers_without_a_key(server: ServerProcess) -> None:
    response = httpx.get(server.url + "/health")
    assert response.status_code == 200
    assert response.json() == {"message": "OK"}


def test_wrong_or_missing_key_is_refused(server: ServerProcess, namespace: str) -> None:
    for headers in ({}, {"x-api-key": "wrong"}):
        response = httpx.get(f"{server.url}/v0/namespace/{namespace}/graphs/", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid API key"}


def test_request_id_is_echoed_when_a_uuid_and_generated_otherwise(api: httpx.Client) -> None:
    given = "4b3f0c9e-1f1e-4c53-a0c6-6f1f3f9b2a11"
    assert api.get("/graphs/", headers={"x-exosphere-request-id": given}).headers["x-exosphere-request-id"] == given
    generated = api.get("/graphs/", headers={"x-exosphere-request-id": "not-a-uuid"}).headers["x-exosphere-request-id"]
    assert generated != "not-a-uuid" and len(generated) == 36
    assert api.get("/graph/missing").headers["x-exosphere-request-id"]


def test_valid_graph_is_valid_at_once_and_secrets_come_back_as_true(api: httpx.Client, namespace: str) -> None:
    register(api, {"Load": (("src",), ("path",)), "Work": (("path",), ("out",))}, secrets={"Work": ["token"]})
    body = api.put(
        "/graph/etl",
        json={
            "secrets": {"token": "hunter2"},
            "nodes": [
                node("load", "Load", namespace, {"src": "s3://x"}, ["work"]),
                node("work", "Work", namespace, {"path": "${{ load.outputs.path }}"}),
            ],
            "retry_policy": {"max_retries": 5, "strategy": "LINEAR", "backoff_factor": 100},
            "store_config": {"required_keys": ["k"], "default_values": {"d": "1"}},
        },
    )
    assert body.status_code == 201, body.text
    created = body.json()
    assert created["validation_status"] == "VALID"
    assert created["secrets"] == {"token": True}
    fetched = api.get("/graph/etl").json()
    assert fetched["retry_policy"]["max_retries"] == 5  # stored values, not defaults (D13)
    assert fetched["store_config"]["default_values"] == {"d": "1"}
    listed = api.get("/graphs/").json()
    assert listed["count"] == 1
    assert "hunter2" not in api.get("/graphs/").text and "hunter2" not in api.get("/graph/etl").text


def test_structural_errors_are_all_listed_and_nothing_is_written(api: httpx.Client, namespace: str) -> None:
    response = api.put(
        "/graph/bad",
        json={
            "secrets": {},
            "nodes": [
                node("a", "A", namespace, {}, ["b", "ghost"]),
                node("b", "B", namespace, {"x": "${{ c.outputs.y }}"}),
                node("c", "C", namespace, {}),
            ],
        },
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("Error validating graph template: ")
    assert "ghost" in detail and "'c'" in detail
    assert api.get("/graph/bad").status_code == 404


def test_graph_can_be_upserted_before_its_nodes_register(api: httpx.Client, namespace: str) -> None:
    created = upsert(
        api,
        "early",
        [node("greeter", "Greeting", namespace, {"name": "${{ store.name }}"})],
        store_config={"default_values": {"name": "x"}},
    )
    assert created["validation_status"] == "VALID"
    assert any("Greeting" in w for w in created["validation_warnings"])
    register(api, {"Greeting": (("name",), ("greeting",))})
    assert api.get("/graph/early").json()["validation_warnings"] == []


def test_registration_that_breaks_a_graph_marks_it_invalid_with_reasons(api: httpx.Client, namespace: str) -> None:
    upsert(api, "g", [node("only", "Node1", namespace, {"a": "1"})])
    register(api, {"Node1": (("a", "b"), ())})
    graph = api.get("/graph/g").json()
    assert graph["validation_status"] == "INVALID"
    assert any("'b'" in e or " b " in e for e in graph["validation_errors"]), graph["validation_errors"]
    trigger = api.post("/graph/g/trigger", json={})
    assert trigger.status_code == 400 and trigger.json()["detail"].startswith("Graph template is not valid")


def test_bad_cron_expression_is_a_422_that_names_it(api: httpx.Client, namespace: str) -> None:
    response = api.put(
        "/graph/c",
        json={
            "secrets": {},
            "nodes": [node("a", "A", namespace)],
            "triggers": [{"type": "CRON", "value": {"expression": "0 0 31 2 *"}}],
        },
    )
    assert response.status_code == 422
    assert "never fires" in response.text


def test_nodes_and_namespaces_are_listed(api: httpx.Client, server: ServerProcess, namespace: str) -> None:
    register(api, {"Lister": (("a",), ("b",))})
    nodes = api.get("/nodes/").json()
    assert nodes["count"] == 1 and nodes["nodes"][0]["name"] == "Lister"
    names = httpx.get(server.url + "/v0/namespaces", headers={"x-api-key": server.api_key}).json()["namespaces"]
    assert namespace in names
