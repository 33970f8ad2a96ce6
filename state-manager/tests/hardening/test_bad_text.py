"""Text that cannot be stored and sent back (lone surrogates, NUL) is refused at every entry point,
and such text already in the database (written by an older version) fails only its own state."""

from __future__ import annotations

import json

import httpx
import pytest
from exosphere_testing import ServerProcess

from ..blackbox.helpers import claim_all, executed, node, register, run, states, trigger, upsert
from .database import execute, placeholder

SURROGATE = "\ud800"
BAD_TEXTS = [pytest.param(SURROGATE, id="surrogate"), pytest.param("a\x00b", id="nul")]


def raw_json(value: object) -> bytes:
    """JSON as a client may send it: `\\ud800` is valid JSON even though it is not valid Unicode."""
    return json.dumps(value, ensure_ascii=True).encode()


def post(api: httpx.Client, path: str, body: object, method: str = "POST") -> httpx.Response:
    return api.request(method, path, content=raw_json(body), headers={"content-type": "application/json"})


@pytest.fixture
def echo(api: httpx.Client, namespace: str) -> str:
    register(api, {"Echo": (("text",), ("out",))})
    nodes = [node("echo", "Echo", namespace, {"text": "${{ store.text }}"})]
    upsert(api, "echo", nodes, store_config={"required_keys": ["text"]})
    return "echo"


def assert_refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    message = json.dumps(response.json())
    assert field in message, message


@pytest.mark.parametrize("bad", BAD_TEXTS)
def test_bad_text_in_a_trigger_is_refused_and_good_runs_all_succeed(api: httpx.Client, echo: str, bad: str) -> None:
    good_runs = [trigger(api, echo, store={"text": f"good {i}"}) for i in range(3)]
    assert_refused(post(api, f"/graph/{echo}/trigger", {"store": {"text": bad}}), "store.text")
    assert_refused(post(api, f"/graph/{echo}/trigger", {"inputs": {"k": bad}}), "inputs.k")
    more_runs = [trigger(api, echo, store={"text": f"good {i}"}) for i in range(3, 6)]
    for state in claim_all(api, "Echo", count=6):
        assert executed(api, state, {"out": state["inputs"]["text"]}).status_code == 200
    for run_id in good_runs + more_runs:
        assert run(api, run_id)["status"] == "SUCCESS"


@pytest.mark.parametrize("bad", BAD_TEXTS)
def test_bad_text_in_results_is_refused_and_the_state_can_still_report(api: httpx.Client, echo: str, bad: str) -> None:
    run_id = trigger(api, echo, store={"text": "x"})
    [state] = claim_all(api, "Echo", count=1)
    path = f"/state/{state['state_id']}"
    lease = state["lease_id"]
    assert_refused(post(api, path + "/executed", {"outputs": [{"out": bad}], "lease_id": lease}), "outputs")
    assert_refused(post(api, path + "/errored", {"error": bad, "lease_id": lease}), "error")
    assert_refused(post(api, path + "/prune", {"data": {"why": bad}, "lease_id": lease}), "data.why")
    many = {"results": [{"state_id": state["state_id"], "outputs": [{"out": bad}], "lease_id": lease}]}
    assert_refused(post(api, "/states/executed", many), "results")
    assert executed(api, state, {"out": "fine"}).status_code == 200
    assert run(api, run_id)["status"] == "SUCCESS"


@pytest.mark.parametrize("bad", BAD_TEXTS)
def test_bad_text_in_names_is_refused(api: httpx.Client, namespace: str, bad: str) -> None:
    schema = {"type": "object", "properties": {}}
    registration = {"name": f"N{bad}", "inputs_schema": schema, "outputs_schema": schema, "secrets": []}
    assert_refused(post(api, "/nodes/", {"runtime_name": "r", "nodes": [registration]}, "PUT"), "nodes")
    graph = {"secrets": {}, "nodes": [node("a", f"N{bad}", namespace)]}
    assert_refused(post(api, "/graph/g", graph, "PUT"), "nodes")
    assert api.get("/graphs/").status_code == 200


def test_stored_bad_text_fails_only_its_own_state(server: ServerProcess, api: httpx.Client, echo: str) -> None:
    """A claim batch holding a state whose inputs an older version stored with a lone surrogate: the
    other states are handed out and run; that one ends ERRORED at once, saying why."""
    bad_run = trigger(api, echo, store={"text": "to be damaged"})
    url = server.database_url
    execute(
        url,
        f"UPDATE states SET inputs = {placeholder(url, 1)} WHERE run_id = {placeholder(url, 2)}",
        '{"text": "\\ud800"}',
        bad_run,
    )
    good_runs = [trigger(api, echo, store={"text": f"good {i}"}) for i in range(3)]
    claimed = claim_all(api, "Echo", count=3)
    assert {s["inputs"]["text"] for s in claimed} == {"good 0", "good 1", "good 2"}
    for state in claimed:
        assert executed(api, state, {"out": "ok"}).status_code == 200
    assert [run(api, r)["status"] for r in good_runs] == ["SUCCESS"] * 3
    [damaged] = states(api, bad_run)
    assert damaged["status"] == "ERRORED", damaged
    assert "cannot be sent to a runtime" in damaged["error"] and "surrogate" in damaged["error"]
    assert run(api, bad_run)["status"] == "FAILED"
    # Listings that carry the stored text still answer, with the text escaped.
    assert api.get(f"/run/{bad_run}/states").json()["states"][0]["inputs"] == {"text": SURROGATE}


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/ns/a%00b",
        "/dashboard/ns/a%00b/runs",
        "/dashboard/ns/x/states/a%00",
        "/dashboard/ns/x/runs?graph=a%00",
        "/dashboard/api/ns/x/runs/a%00/progress",
    ],
)
def test_nul_in_a_dashboard_url_is_a_422_not_a_500(server: ServerProcess, path: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        assert browser.post("/dashboard/login", data={"api_key": server.api_key}).status_code == 303
        response = browser.get(path)
    assert response.status_code == 422, response.text
    assert "NUL" in response.text


def test_a_graph_stored_with_bad_text_still_reads_back(server: ServerProcess, api: httpx.Client, echo: str) -> None:
    """The graph listing (and a graph's own page) answered 500 until such a graph was overwritten."""
    url = server.database_url
    execute(
        url,
        f"UPDATE graphs SET validation_warnings = {placeholder(url, 1)} WHERE name = {placeholder(url, 2)}",
        '["note \\ud800"]',
        echo,
    )
    listing = api.get("/graphs/")
    assert listing.status_code == 200, listing.text
    assert listing.json()["templates"][0]["validation_warnings"] == [f"note {SURROGATE}"]
    single = api.get(f"/graph/{echo}")
    assert single.status_code == 200, single.text
    assert single.json()["validation_warnings"] == [f"note {SURROGATE}"]
