"""Nothing answers 5xx or non-JSON for a malformed id, body, path or query (D21; PROTOCOL §1.3–1.4).

A generated test walks EVERY operation of the running server's `/openapi.json` with schemathesis,
in positive (schema-valid) and negative (schema-violating) generation modes, once with random path
values and once with the ids of real graphs, runs and states, so malformed bodies reach the engine
too. A hand-written test pins the exact known-bad inputs.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from exosphere_testing import ServerProcess
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from ..blackbox.helpers import claim_all, node, register, trigger, upsert

# A live stream's upload body is JSON lines, sent as the text it is (`POST .../state/{id}/stream`).
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

EXAMPLES_PER_OPERATION = 30  # per generation mode and per pass
MAX_WAIT_MS = 50  # long-poll bounds are capped so the fuzzing stays fast
REQUEST_TIMEOUT_S = 10


def _capped(value: Any) -> Any:
    """A long-poll bound the server would accept as a number above MAX_WAIT_MS, capped; anything else kept."""
    if isinstance(value, bool):
        return value
    number: float | None = None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is not None and number == number and number > MAX_WAIT_MS:  # not NaN
        return MAX_WAIT_MS
    return value


def cap_long_polls(case: schemathesis.Case) -> None:
    if isinstance(case.query, dict) and "wait_ms" in case.query:
        case.query["wait_ms"] = _capped(case.query["wait_ms"])
    if isinstance(case.body, dict) and "wait_ms" in case.body:
        case.body["wait_ms"] = _capped(case.body["wait_ms"])


# Text that is valid JSON but cannot be stored or sent back as is: lone surrogates (valid as `\ud800`
# escapes in JSON, not as UTF-8) and NUL. Hypothesis never generates surrogates itself.
POISONS = ["\ud800", "\udcff", "\x00", "a\x00b\udfff"]


def _text_slots(value: Any) -> list[tuple[Any, Any, bool]]:
    """Every (container, key, is_key) where a string sits in a JSON value, keys of objects included."""
    slots: list[tuple[Any, Any, bool]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                slots.append((value, key, True))
            if isinstance(item, str):
                slots.append((value, key, False))
            slots += _text_slots(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                slots.append((value, index, False))
            slots += _text_slots(item)
    return slots


def poison(case: schemathesis.Case, poison_text: str | None, choice: int) -> None:
    """Put one poison into one string of the body (a value or a key), or NUL into a query value."""
    if poison_text is None:
        return
    slots = _text_slots(case.body)
    if slots:
        container, key, is_key = slots[choice % len(slots)]
        if is_key:
            container[key + poison_text] = container.pop(key)
        else:
            container[key] = container[key] + poison_text
    elif isinstance(case.query, dict):
        names = [name for name, value in case.query.items() if isinstance(value, str)]
        if names:  # a URL cannot carry a lone surrogate, but it can carry %00
            name = names[choice % len(names)]
            case.query[name] = case.query[name] + "\x00"


def assert_json_and_no_5xx(case: schemathesis.Case, response: schemathesis.Response) -> None:
    where = f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r}"
    assert response.status_code < 500, f"{response.status_code} for {where}: {response.text[:500]}"
    content_types = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [])
    content_type = content_types[0] if content_types else ""
    assert content_type.startswith("application/json"), f"content-type {content_type!r} for {where}"
    try:
        response.json()
    except ValueError as exc:  # pragma: no cover - the assertion message is the point
        raise AssertionError(f"non-JSON body for {where}: {response.text[:500]!r}") from exc


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    server: ServerProcess,
    session: requests.Session,
    path_values: dict[str, list[str]] | None = None,
) -> int:
    """Send EXAMPLES_PER_OPERATION generated requests to one operation; return how many were sent."""
    names = [p.name for p in operation.path_parameters]
    fixed = {name: values for name, values in (path_values or {}).items() if name in names}
    if fixed:
        strategy = st.fixed_dictionaries({name: st.sampled_from(values) for name, values in fixed.items()}).flatmap(
            lambda chosen: operation.as_strategy(generation_mode=mode, path_parameters=chosen)
        )
    else:
        strategy = operation.as_strategy(generation_mode=mode)
    sent = 0

    @given(case=strategy, poison_text=st.none() | st.sampled_from(POISONS), choice=st.integers(0, 10_000))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    def check(case: schemathesis.Case, poison_text: str | None, choice: int) -> None:
        nonlocal sent
        cap_long_polls(case)
        poison(case, poison_text, choice)
        response = case.call(
            base_url=server.url, session=session, headers={"x-api-key": server.api_key}, timeout=REQUEST_TIMEOUT_S
        )
        sent += 1
        assert_json_and_no_5xx(case, response)

    try:
        check()
    except Unsatisfiable:
        # Free-string path parameters (or none at all) leave nothing to negate; everything else must fuzz.
        if mode is GenerationMode.NEGATIVE and not len(operation.body) and not len(operation.query):
            return 0
        raise
    return sent


@pytest.fixture(scope="module")
def openapi(server: ServerProcess) -> Any:
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


EVENT_STREAMS = {
    "GET /v0/namespace/{namespace_name}/run/{run_id}/events",
    "GET /v0/namespace/{namespace_name}/state/{state_id}/stream",
}


def operations(schema: Any) -> list[Any]:
    """Every operation but the event streams, which answer 200 with a body that never ends while the run
    (or the state's attempt) is pending (`test_run_events_refuse_bad_input_before_streaming` fuzzes the
    run's; tests/streams pins the state's refusals)."""
    found = [result.ok() for result in schema.get_all_operations()]
    assert found, "the OpenAPI schema lists no operations"
    streams = [op for op in found if op.label.endswith(("/events", "/stream")) and op.method.upper() == "GET"]
    assert {op.label for op in streams} == EVENT_STREAMS
    return [op for op in found if op not in streams]


@pytest.fixture
def real_ids(server: ServerProcess, api: httpx.Client, namespace: str) -> dict[str, list[str]]:
    """A namespace with a registered node, a valid graph, runs and states in several statuses."""
    register(api, {"FuzzRoot": (("text",), ("out",)), "FuzzLeaf": (("x",), ("y",))}, secrets={"FuzzRoot": ["tok"]})
    upsert(
        api,
        "fuzzg",
        [
            node("root", "FuzzRoot", namespace, {"text": "${{ store.text }}"}, ["leaf"]),
            node("leaf", "FuzzLeaf", namespace, {"x": "${{ root.outputs.out }}"}),
        ],
        secrets={"tok": "s3cret"},
        store_config={"required_keys": [], "default_values": {"text": "t"}},
        retry_policy={"max_retries": 2, "strategy": "FIXED", "backoff_factor": 1},
    )
    run_ids = [trigger(api, "fuzzg") for _ in range(12)]
    roots = claim_all(api, "FuzzRoot", count=12)
    # A few finished states among the queued ones, so handlers see several statuses.
    for state in roots[:2]:
        assert api.post(f"/state/{state['state_id']}/executed", json={"outputs": [{"out": "o"}]}).status_code == 200
    assert api.post(f"/state/{roots[2]['state_id']}/errored", json={"error": "e"}).status_code == 200
    return {
        "namespace_name": [namespace],
        "graph_name": ["fuzzg"],
        "run_id": run_ids,
        "state_id": [s["state_id"] for s in roots],
        "node_id": [s["state_id"] for s in roots],
    }


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_every_operation_with_random_paths(server: ServerProcess, openapi: Any, mode: GenerationMode) -> None:
    with requests.Session() as session:
        sent = {op.label: fuzz_operation(op, mode, server, session) for op in operations(openapi)}
    # Every operation with a body was fuzzed in both modes; in positive mode every operation was.
    assert all(
        n > 0 for label, n in sent.items() if mode is GenerationMode.POSITIVE or label.startswith(("PUT", "POST"))
    )


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_every_operation_on_real_objects(
    server: ServerProcess, openapi: Any, real_ids: dict[str, list[str]], mode: GenerationMode
) -> None:
    with requests.Session() as session:
        for op in operations(openapi):
            fuzz_operation(op, mode, server, session, path_values=real_ids)


@given(
    run_id=st.sampled_from(["real"]) | st.text(min_size=1, max_size=40),
    # Header values as HTTP allows them (control characters are refused by the HTTP parser, before the app).
    last_event_id=st.none()
    | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
    | st.integers(-5, 10**20).map(str),
)
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_run_events_refuse_bad_input_before_streaming(
    server: ServerProcess, api: httpx.Client, real_ids: dict[str, list[str]], run_id: str, last_event_id: str | None
) -> None:
    """A stream starts (200, `retry:` first) only for a real run and a well-formed id; anything else is a JSON 4xx."""
    run = real_ids["run_id"][0] if run_id == "real" else run_id
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    try:
        request = api.build_request("GET", f"/run/{quote(run, safe='')}/events", headers=headers)
        response = api.send(request, stream=True)
    except (UnicodeEncodeError, httpx.LocalProtocolError):
        return  # not sendable as a URL or a header at all
    try:
        assert response.status_code < 500, response.read()
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert next(response.iter_lines()) == "retry: 1000"
        else:
            assert response.headers["content-type"].startswith("application/json")
            json.loads(response.read())
    finally:
        response.close()


# ---- the exact known-bad inputs -----------------------------------------------------------------

MALFORMED_IDS = [
    "not-an-id",
    "0",
    "zzzzzzzzzzzzzzzzzzzzzzzz",
    "66d8f0c2a1b2c3d4e5f60718",
    "a" * 300,
    "%C3%A9%F0%9F%92%A5",
    "..%2F",
]
STATE_POSTS: dict[str, dict[str, Any]] = {
    "executed": {"outputs": []},
    "errored": {"error": "x"},
    "prune": {"data": {}},
    "re-enqueue-after": {"enqueue_after": 5},
    "manual-retry": {"fanout_id": "f"},
    "heartbeat": {"lease_id": "l"},
    "release": {"lease_id": "l"},
}


def assert_json(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()


@pytest.mark.parametrize("state_id", MALFORMED_IDS)
@pytest.mark.parametrize("endpoint", sorted(STATE_POSTS))
def test_malformed_state_id_is_a_json_404(api: httpx.Client, endpoint: str, state_id: str) -> None:
    body = assert_json(api.post(f"/state/{state_id}/{endpoint}", json=STATE_POSTS[endpoint]), 404)
    # An encoded slash decodes to another path: then no route matches at all.
    assert body == ({"detail": "Not Found"} if "%2F" in state_id else {"detail": "State not found"})


@pytest.mark.parametrize("state_id", MALFORMED_IDS)
def test_malformed_state_id_on_secrets_is_a_json_404(api: httpx.Client, state_id: str) -> None:
    body = assert_json(api.get(f"/state/{state_id}/secrets"), 404)
    assert body == ({"detail": "Not Found"} if "%2F" in state_id else {"detail": "State not found"})


def test_state_of_another_namespace_is_a_404(server: ServerProcess, api: httpx.Client, namespace: str) -> None:
    register(api, {"Solo": ((), ("y",))})
    upsert(api, "solo", [node("solo", "Solo", namespace)])
    trigger(api, "solo")
    [state] = claim_all(api, "Solo", count=1)
    other = f"{server.url}/v0/namespace/{namespace}-other/state/{state['state_id']}"
    headers = {"x-api-key": server.api_key}
    for endpoint, body in STATE_POSTS.items():
        assert_json(httpx.post(f"{other}/{endpoint}", json=body, headers=headers), 404)
    assert_json(httpx.get(f"{other}/secrets", headers=headers), 404)


@pytest.mark.parametrize("endpoint", sorted(STATE_POSTS))
def test_nul_in_a_state_id_is_a_422_naming_it(api: httpx.Client, endpoint: str) -> None:
    """PostgreSQL cannot hold NUL characters; both backends refuse them alike instead of a 500 on one."""
    body = assert_json(api.post(f"/state/ab%00cd/{endpoint}", json=STATE_POSTS[endpoint]), 422)
    assert body["detail"][0]["loc"] == ["path", "state_id"]


@pytest.mark.parametrize(
    "method,path,kwargs,loc",
    [
        ("GET", "/state/%00/secrets", {}, ["path", "state_id"]),
        ("GET", "/graph/g%00", {}, ["path", "graph_name"]),
        ("GET", "/run/r%00/states", {}, ["path", "run_id"]),
        ("GET", "/runs/1/10", {"params": {"graph_name": "g\x00"}}, ["query", "graph_name"]),
        ("POST", "/graph/g/trigger", {"json": {"store": {"k": "v\x00"}}}, ["body"]),
        ("POST", "/states/enqueue", {"json": {"nodes": ["a\x00"], "batch_size": 1}}, ["body"]),
        ("POST", "/state/abc/errored", {"json": {"error": "\x00"}}, ["body"]),
        ("POST", "/state/abc/prune", {"json": {"data": {"k\x00": 1}}}, ["body"]),
        ("PUT", "/nodes/", {"json": {"runtime_name": "r\x00", "nodes": []}}, ["body"]),
    ],
)
def test_nul_characters_anywhere_are_a_422(
    api: httpx.Client, method: str, path: str, kwargs: dict[str, Any], loc: list[str]
) -> None:
    body = assert_json(api.request(method, path, **kwargs), 422)
    assert body["detail"][0]["loc"][: len(loc)] == loc, body


def test_nul_in_a_namespace_is_a_422(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/v0/namespace/a%00b/graphs/", headers={"x-api-key": server.api_key})
    assert assert_json(response, 422)["detail"][0]["loc"] == ["path", "namespace_name"]


@pytest.mark.parametrize(
    "page_size", ["0/1", "1/0", "0/0", "-1/5", "1/-1", "-3/-3", "a/1", "1/b", "1.5/2", "99999999999999999999/1"]
)
def test_bad_runs_page_or_size_is_a_422(api: httpx.Client, page_size: str) -> None:
    assert_json(api.get(f"/runs/{page_size}"), 422)


def test_runs_size_is_bounded(api: httpx.Client) -> None:
    assert_json(api.get("/runs/1/1000"), 200)
    assert_json(api.get("/runs/1/1001"), 422)


@pytest.mark.parametrize("value", [1, 1.5, True, None, ["a"], {"a": "b"}])
def test_non_string_output_values_are_a_422(api: httpx.Client, value: Any) -> None:
    detail = assert_json(api.post("/state/66d8f0c2a1b2c3d4e5f60718/executed", json={"outputs": [{"k": value}]}), 422)
    assert detail["detail"][0]["loc"][:2] == ["body", "outputs"]


@pytest.mark.parametrize("batch_size", [0, -1, 1001, 100000, "many", None, 1.5])
def test_out_of_range_batch_size_is_a_422(api: httpx.Client, batch_size: Any) -> None:
    body = assert_json(api.post("/states/enqueue", json={"nodes": ["a"], "batch_size": batch_size}), 422)
    assert body["detail"][0]["loc"] == ["body", "batch_size"]


@pytest.mark.parametrize("field,value", [("wait_ms", -1), ("wait_ms", 60001), ("lease_ms", 999), ("lease_ms", 0)])
def test_out_of_range_claim_bounds_are_a_422(api: httpx.Client, field: str, value: int) -> None:
    assert_json(api.post("/states/enqueue", json={"nodes": ["a"], "batch_size": 1, field: value}), 422)


@pytest.mark.parametrize(
    "path",
    [
        "/states/enqueue",
        "/graph/g/trigger",
        "/state/66d8f0c2a1b2c3d4e5f60718/executed",
        "/state/66d8f0c2a1b2c3d4e5f60718/errored",
        "/state/66d8f0c2a1b2c3d4e5f60718/re-enqueue-after",
    ],
)
@pytest.mark.parametrize("raw", [b"not json", b"{", b"\xff\xfe\x00", b"", b"[1,2"])
def test_non_json_body_is_a_4xx_json_answer(api: httpx.Client, path: str, raw: bytes) -> None:
    response = api.post(path, content=raw, headers={"content-type": "application/json"})
    # FastAPI answers a body that is not JSON with 422 `json_invalid`; bytes that are not even UTF-8
    # are refused with 400 before JSON parsing. Either way: a client error, in JSON.
    expected = 400 if raw == b"\xff\xfe\x00" else 422
    assert_json(response, expected)


def test_non_json_body_on_put_is_a_422(api: httpx.Client) -> None:
    for path in ("/graph/g", "/nodes/"):
        assert_json(api.put(path, content=b"nope", headers={"content-type": "application/json"}), 422)


@pytest.mark.parametrize(
    "method,path",
    [
        ("DELETE", "/states/enqueue"),
        ("GET", "/states/enqueue"),
        ("POST", "/graph/g"),
        ("PATCH", "/nodes/"),
        ("GET", "/state/66d8f0c2a1b2c3d4e5f60718/executed"),
        ("PUT", "/graph/g/trigger"),
    ],
)
def test_wrong_method_is_a_json_405(api: httpx.Client, method: str, path: str) -> None:
    assert assert_json(api.request(method, path), 405) == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize("path", ["/v0/nope", "/nope", "/v1/namespaces", "/v0/namespace/x/unknown/route"])
def test_unknown_route_is_a_json_404(server: ServerProcess, path: str) -> None:
    response = httpx.get(server.url + path, headers={"x-api-key": server.api_key})
    assert assert_json(response, 404) == {"detail": "Not Found"}


def test_malformed_node_id_in_state_details_is_a_client_error(api: httpx.Client) -> None:
    # PROTOCOL §4.18 keeps upstream's 400 for a malformed node id.
    assert_json(api.get("/graph/g/run/r/node/not-an-id"), 400)
    assert_json(api.get("/graph/g/run/r/node/66d8f0c2a1b2c3d4e5f60718"), 404)


def test_unknown_run_is_a_json_404(api: httpx.Client) -> None:
    assert_json(api.get("/run/not-a-run"), 404)
    assert_json(api.get("/run/not-a-run/states"), 404)
    assert_json(api.get("/run/not-a-run", params={"wait_ms": "abc"}), 422)


def test_bad_api_key_is_a_json_401(server: ServerProcess, namespace: str) -> None:
    url = f"{server.url}/v0/namespace/{namespace}/states/enqueue"
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": ""}):
        response = httpx.post(url, json={"nodes": ["a"], "batch_size": 1}, headers=headers)
        assert assert_json(response, 401) == {"detail": "Invalid API key"}


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
@pytest.mark.parametrize(
    "method,path,template",
    [
        (
            "PUT",
            "/nodes/",
            b'{"runtime_name": "r", "nodes": [{"name": "A", "inputs_schema": {"x": %s},'
            b' "outputs_schema": {}, "secrets": []}]}',
        ),
        ("POST", "/state/66d8f0c2a1b2c3d4e5f60718/prune", b'{"data": {"x": %s}}'),
        ("POST", "/states/enqueue", b'{"nodes": ["a"], "batch_size": %s}'),
    ],
)
def test_non_finite_numbers_are_a_422(
    api: httpx.Client, method: str, path: str, template: bytes, number: bytes
) -> None:
    """Python's JSON parser accepts NaN/Infinity; PostgreSQL cannot store them and strict JSON cannot echo them."""
    response = api.request(method, path, content=template % number, headers={"content-type": "application/json"})
    assert_json(response, 422)


def test_very_long_names_are_not_a_500(
    request: pytest.FixtureRequest, backend: str, api: httpx.Client, namespace: str
) -> None:
    long_name = "n" * 9000
    register(api, {long_name: ((), ("y",))})
    upsert(api, "long", [node("root", long_name, namespace)])
    response = api.post("/graph/long/trigger", json={})
    assert response.status_code == 200, response.text
    assert len(claim_all(api, long_name, count=1)) == 1
