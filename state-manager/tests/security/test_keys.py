"""Scoped API keys: each role may call its routes and gets a 403 naming the role elsewhere; a key for one
namespace stays in it; keys are stored hashed; a revoked key is refused at once, on every replica; a
runtime with a runtime key runs a graph an operator triggered; the audit log says who did what."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until

from ..hardening.database import execute

RUNTIME_APP = Path(__file__).parent / "keys_runtime_app.py"
UNKNOWN_STATE = "0123456789abcdef01234567"

# One representative call per class of route in api/access.py, and the roles that may make it.
ROUTE_CLASSES: dict[str, tuple[str, str, dict[str, Any] | None, set[str]]] = {
    "read": ("GET", "/v0/namespace/{ns}/graphs/", None, {"admin", "operator", "viewer"}),
    "trigger": ("POST", "/v0/namespace/{ns}/graph/none/trigger", {}, {"admin", "operator"}),
    "cancel": ("POST", "/v0/namespace/{ns}/run/no-such-run/cancel", {}, {"admin", "operator"}),
    "retry": (
        "POST",
        f"/v0/namespace/{{ns}}/state/{UNKNOWN_STATE}/manual-retry",
        {"fanout_id": "f"},
        {"admin", "operator"},
    ),
    "claim": ("POST", "/v0/namespace/{ns}/states/enqueue", {"nodes": ["Echo"], "batch_size": 1}, {"admin", "runtime"}),
    "secrets": ("GET", f"/v0/namespace/{{ns}}/state/{UNKNOWN_STATE}/secrets", None, {"admin", "runtime"}),
    "signal": (
        "POST",
        f"/v0/namespace/{{ns}}/state/{UNKNOWN_STATE}/prune",
        {"data": {}},
        {"admin", "operator", "runtime"},
    ),
    "upsert graph": ("PUT", "/v0/namespace/{ns}/graph/g", {"nodes": []}, {"admin"}),
    "keys": ("GET", "/v0/keys", None, {"admin"}),
    "audit": ("GET", "/v0/audit", None, {"admin"}),
}
NEEDED = {  # how the 403 names the roles a class of route needs
    frozenset({"admin", "operator", "viewer"}): "needs the viewer or operator or admin role",
    frozenset({"admin", "operator"}): "needs the operator or admin role",
    frozenset({"admin", "runtime"}): "needs the runtime or admin role",
    frozenset({"admin", "operator", "runtime"}): "needs the runtime or operator or admin role",
    frozenset({"admin"}): "needs the admin role",
}


def admin(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": server.api_key}, timeout=30)


def as_key(server: ServerProcess, secret: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": secret}, timeout=30)


def create_key(server: ServerProcess, name: str, role: str, namespace: str | None = None) -> dict[str, Any]:
    with admin(server) as client:
        response = client.post("/v0/keys", json={"name": name, "role": role, "namespace": namespace})
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def call(client: httpx.Client, route_class: str, namespace: str) -> httpx.Response:
    method, path, body, _roles = ROUTE_CLASSES[route_class]
    return client.request(method, path.format(ns=namespace), json=body)


@pytest.mark.parametrize("role", ["admin", "operator", "runtime", "viewer"])
def test_each_role_may_call_its_routes_and_gets_a_403_naming_the_role_it_needed_elsewhere(
    server: ServerProcess, namespace: str, role: str
) -> None:
    key = create_key(server, f"{role}-key", role)
    with as_key(server, key["key"]) as client:
        for route_class, (_m, _p, _b, roles) in ROUTE_CLASSES.items():
            response = call(client, route_class, namespace)
            if role in roles:
                assert response.status_code not in (401, 403), (route_class, response.text)
            else:
                assert response.status_code == 403, (route_class, response.text)
                detail = response.json()["detail"]
                assert NEEDED[frozenset(roles)] in detail and f"has the {role} role" in detail, detail
                assert key["id"] in detail and f"{role}-key" in detail


def test_state_manager_secret_stays_an_admin_key(server: ServerProcess, namespace: str) -> None:
    with admin(server) as client:
        for route_class in ROUTE_CLASSES:
            assert call(client, route_class, namespace).status_code not in (401, 403), route_class


def test_a_key_for_one_namespace_is_refused_in_the_others_and_outside_namespaces(
    server: ServerProcess, namespace: str
) -> None:
    key = create_key(server, "ns-operator", "operator", namespace)
    with as_key(server, key["key"]) as client:
        assert call(client, "trigger", namespace).status_code == 404  # allowed: the graph does not exist
        refused = call(client, "trigger", namespace + "-other")
        assert refused.status_code == 403
        assert f"limited to namespace '{namespace}'" in refused.json()["detail"]
        assert client.get("/v0/namespaces").status_code == 403
    admin_of_one = create_key(server, "ns-admin", "admin", namespace)
    with as_key(server, admin_of_one["key"]) as client:
        refused = call(client, "keys", namespace)  # keys are for every namespace: not for a namespace's admin
        assert refused.status_code == 403 and "needs a key for every namespace" in refused.json()["detail"]


def test_keys_are_stored_only_as_sha256_and_never_listed(server: ServerProcess) -> None:
    key = create_key(server, "hashed", "viewer")
    rows = execute(server.database_url or "", f"SELECT * FROM api_keys WHERE id = '{key['id']}'")
    assert len(rows) == 1
    assert hashlib.sha256(key["key"].encode()).hexdigest() in rows[0]
    assert not any(key["key"] in str(value) for value in rows[0])
    with admin(server) as client:
        listed = client.get("/v0/keys").json()["keys"]
    mine = [k for k in listed if k["id"] == key["id"]]
    assert mine == [{k: v for k, v in key.items() if k != "key"}]


def test_bad_key_requests_are_4xx_that_say_what_to_fix(server: ServerProcess) -> None:
    with admin(server) as client:
        bad_role = client.post("/v0/keys", json={"name": "x", "role": "superuser"})
        assert bad_role.status_code == 422 and "role" in bad_role.text
        assert client.post("/v0/keys", json={"name": "", "role": "viewer"}).status_code == 422
        unknown = client.delete("/v0/keys/key_missing")
        assert unknown.status_code == 404 and "exosphere key list" in unknown.json()["detail"]
        assert client.get("/v0/audit?limit=0").status_code == 422
    with as_key(server, "exo_never-issued") as client:
        assert call(client, "read", "any").status_code == 401


def test_a_revoked_key_is_refused_at_once_and_revoking_twice_is_harmless(server: ServerProcess, namespace: str) -> None:
    key = create_key(server, "short-lived", "viewer")
    with as_key(server, key["key"]) as client, admin(server) as root:
        assert call(client, "read", namespace).status_code == 200
        revoked = root.delete(f"/v0/keys/{key['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert call(client, "read", namespace).status_code == 401
        again = root.delete(f"/v0/keys/{key['id']}")
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]


def test_a_key_revoked_on_one_replica_is_refused_by_the_others_at_once(
    backend: str, make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    if backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database; one SQLite file has one server")
    first = make_server()
    second = make_server(first.database_url)
    key = create_key(first, "replicated", "operator")
    with as_key(second, key["key"]) as client, admin(first) as root:
        assert call(client, "read", namespace).status_code == 200  # the key is known to the other replica
        assert root.delete(f"/v0/keys/{key['id']}").status_code == 200
        assert call(client, "read", namespace).status_code == 401  # ...and its revocation, at the next request


def echo_graph(namespace: str) -> dict[str, Any]:
    echo = {"node_name": "Echo", "namespace": namespace, "identifier": "echo", "next_nodes": []}
    return {
        "nodes": [{**echo, "inputs": {"text": "${{ store.text }}"}}],
        "store_config": {"required_keys": ["text"]},
        "secrets": {"token": "s3cret"},
        "retry_policy": {"max_retries": 0},
    }


@pytest.fixture
def runtime_with_runtime_key(server: ServerProcess, namespace: str, tmp_path: Path) -> Iterator[str]:
    """The SDK runtime of keys_runtime_app.py, serving with a runtime key of this namespace only."""
    key = create_key(server, "echo-runtime", "runtime", namespace)
    env = {**os.environ, "EXOSPHERE_STATE_MANAGER_URI": server.url, "EXOSPHERE_API_KEY": key["key"]}
    env["EXOSPHERE_NAMESPACE"] = namespace
    log_path = tmp_path / "runtime.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, str(RUNTIME_APP)], env=env, stdout=log, stderr=log)
    try:
        with admin(server) as root:
            wait_until(lambda: root.get(f"/v0/namespace/{namespace}/nodes/").json()["count"] == 1, what="registration")
        yield key["id"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_runtime_key_runs_what_an_operator_triggered_and_the_audit_log_says_who_did_what(
    server: ServerProcess, namespace: str, runtime_with_runtime_key: str
) -> None:
    operator, viewer = create_key(server, "ops-person", "operator"), create_key(server, "watcher", "viewer", namespace)
    with admin(server) as root, as_key(server, operator["key"]) as ops, as_key(server, viewer["key"]) as view:
        base = f"/v0/namespace/{namespace}"
        assert root.put(f"{base}/graph/echo", json=echo_graph(namespace)).status_code == 201
        refused = view.post(f"{base}/graph/echo/trigger", json={"store": {"text": "hi"}})
        assert refused.status_code == 403  # refused calls are not audited
        run_id = ops.post(f"{base}/graph/echo/trigger", json={"store": {"text": "fail"}}).json()["run_id"]

        def finished() -> bool:
            return bool(view.get(f"{base}/run/{run_id}").json()["finished"])

        wait_until(finished, what="the run to finish")
        failed = view.get(f"{base}/run/{run_id}/states").json()["states"][0]
        assert failed["status"] == "ERRORED", failed
        retried = ops.post(f"{base}/state/{failed['state_id']}/manual-retry", json={"fanout_id": "again"}).json()
        entries = [e for e in root.get("/v0/audit").json()["entries"] if e["namespace"] == namespace]
    assert [(e["action"], e["key_name"], e["role"]) for e in entries] == [
        ("manual-retry", "ops-person", "operator"),
        ("trigger", "ops-person", "operator"),
        ("graph-upsert", "STATE_MANAGER_SECRET", "admin"),
    ]
    assert entries[0]["target"] == f"state_id {failed['state_id']}, id {retried['id']}"
    assert entries[1]["target"] == f"graph_name echo, run_id {run_id}" and entries[1]["key_id"] == operator["id"]
    assert entries[0]["id"] > entries[1]["id"] > entries[2]["id"] and entries[0]["at"] >= entries[2]["at"]


def test_operators_and_viewers_cannot_read_the_audit_log(server: ServerProcess) -> None:
    for role in ("operator", "viewer", "runtime"):
        with as_key(server, create_key(server, f"{role}-auditor", role)["key"]) as client:
            refused = client.get("/v0/audit")
            assert refused.status_code == 403 and "needs the admin role" in refused.json()["detail"]
