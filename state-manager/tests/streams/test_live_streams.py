"""Live streams out of running nodes, on SQLite and PostgreSQL, with a real runtime process.

Users rely on: what a node streams is stored and can be read from offset 0 after the node finished,
in order, ending with the attempt; a reader that drops its connection mid-way resumes with
`Last-Event-ID` and gets the rest once, live; a retried attempt streams afresh while the failed
attempt's stream stays readable; bad uploads are 4xx that say what to fix.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until
from exospherehost import StateManager

from tests.blackbox.helpers import by_identifier, claim_all, executed, node, register, run, states, trigger, upsert
from tests.streams.conftest import running_runtime


def _talk_graph(api: httpx.Client, namespace: str) -> None:
    upsert(
        api,
        "talk",
        [node("talk", "Talk", namespace, {"count": "${{ store.count }}", "gate": "${{ store.gate }}"})],
        store_config={"required_keys": ["count"], "default_values": {"gate": ""}},
    )


def _finished(api: httpx.Client, run_id: str) -> dict[str, Any]:
    wait_until(lambda: run(api, run_id)["status"] != "PENDING", what=f"run {run_id} to finish")
    return run(api, run_id)


def _sse(lines: list[str]) -> list[tuple[str, dict[str, Any], str | None]]:
    """(event, data, id) of the complete events in `lines`."""
    events, kind, data, event_id = [], "", "", None
    for line in lines:
        if not line:
            if kind:
                events.append((kind, json.loads(data), event_id))
            kind, data, event_id = "", "", None
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line.startswith("id: "):
            event_id = line[4:]
    return events


async def test_a_finished_nodes_stream_reads_from_offset_0_in_order_and_ends(
    server: ServerProcess, api: httpx.Client, namespace: str, runtime: Path
) -> None:
    _talk_graph(api, namespace)
    run_id = trigger(api, "talk", store={"count": "120"})
    assert _finished(api, run_id)["status"] == "SUCCESS"
    [state] = states(api, run_id)
    async with StateManager(namespace, state_manager_uri=server.url, key=server.api_key) as sm:
        chunks = [chunk async for chunk in sm.stream_state(state["state_id"])]
        assert [c.text for c in chunks] == [f"word{i} " for i in range(120)]
        assert [c.offset for c in chunks] == list(range(120))
        assert {c.attempt for c in chunks} == {1}
        tail = [chunk.text async for chunk in sm.stream_state(state["state_id"], from_offset=117)]
        assert tail == ["word117 ", "word118 ", "word119 "]


def test_a_reader_dropped_mid_way_resumes_with_last_event_id_and_gets_the_rest_once_live(
    server: ServerProcess, api: httpx.Client, namespace: str, runtime: Path
) -> None:
    _talk_graph(api, namespace)
    gate = runtime / "gate"
    run_id = trigger(api, "talk", store={"count": "40", "gate": str(gate)})
    wait_until(lambda: states(api, run_id) and states(api, run_id)[0]["status"] == "QUEUED", what="Talk to run")
    [state] = states(api, run_id)
    url = f"/state/{state['state_id']}/stream"
    seen: list[tuple[str, dict[str, Any], str | None]] = []
    with api.stream("GET", url, timeout=httpx.Timeout(30)) as response:  # the first half, live; then dropped
        assert response.status_code == 200
        lines: list[str] = []
        for line in response.iter_lines():
            lines.append(line)
            seen = _sse(lines)
            if len(seen) == 20:
                break
    assert [data["text"] for _, data, _ in seen] == [f"word{i} " for i in range(20)]
    assert seen[-1][2] == "19"
    assert run(api, run_id)["status"] == "PENDING"  # the node waits at its gate: the stream was live
    gate.touch()
    with api.stream("GET", url, headers={"Last-Event-ID": "19"}, timeout=httpx.Timeout(30)) as response:
        rest = _sse(list(response.iter_lines()))
    assert [data["text"] for kind, data, _ in rest if kind == "chunk"] == [f"word{i} " for i in range(20, 40)]
    assert [event_id for kind, _, event_id in rest if kind == "chunk"] == [str(i) for i in range(20, 40)]
    assert rest[-1][0] == "end"
    assert rest[-1][1] == {"attempt": 1, "next_offset": 40, "status": "SUCCESS"}


async def test_a_retried_attempt_streams_afresh_and_the_failed_attempts_stream_stays_readable(
    server: ServerProcess, api: httpx.Client, namespace: str, runtime: Path
) -> None:
    retry = {"max_retries": 1, "strategy": "FIXED", "backoff_factor": 1}
    upsert(api, "flaky", [node("flaky", "Flaky", namespace)], retry_policy=retry)
    run_id = trigger(api, "flaky")
    assert _finished(api, run_id)["status"] == "SUCCESS"
    found = sorted(by_identifier(states(api, run_id), "flaky"), key=lambda s: s["status"] != "RETRY_CREATED")
    assert [s["status"] for s in found] == ["RETRY_CREATED", "SUCCESS"]
    async with StateManager(namespace, state_manager_uri=server.url, key=server.api_key) as sm:
        failed = [c.text async for c in sm.stream_state(found[0]["state_id"])]
        retried = [c.text async for c in sm.stream_state(found[1]["state_id"])]
    assert (failed, retried) == (["try 1"], ["try 2"])


def test_an_upload_resent_after_a_lost_answer_stores_each_chunk_once_and_bad_uploads_say_why(
    api: httpx.Client, namespace: str
) -> None:
    register(api, {"Manual": ((), ())})
    upsert(api, "manual", [node("manual", "Manual", namespace)])
    run_id = trigger(api, "manual")
    [state] = claim_all(api, "Manual", count=1)
    url, lease = f"/state/{state['state_id']}/stream", {"lease_id": state["lease_id"]}
    first = api.post(url, params={**lease, "offset": 0}, content=b'"a"\n"b"\n')
    assert first.json() == {"attempt": 1, "next_offset": 2}
    again = api.post(url, params={**lease, "offset": 0}, content=b'"a"\n"b"\n"c"\n')  # answer "lost"
    assert again.json() == {"attempt": 1, "next_offset": 3}
    bad = api.post(url, params={**lease, "offset": 3}, content=b'"d"\n42\n')
    assert bad.status_code == 400 and "offset 4" in bad.json()["detail"], bad.text
    nul = api.post(url, params={**lease, "offset": 3}, content=b'"\\u0000"\n')
    assert nul.status_code == 400 and "NUL" in nul.json()["detail"], nul.text
    assert api.post(url, params={**lease, "offset": 3}, content=b'"d"').json()["next_offset"] == 4
    assert executed(api, state).status_code == 200
    with api.stream("GET", url, timeout=httpx.Timeout(30)) as response:
        events = _sse(list(response.iter_lines()))
    assert [data["text"] for kind, data, _ in events if kind == "chunk"] == ["a", "b", "c", "d"]
    assert events[-1] == ("end", {"attempt": 1, "next_offset": 4, "status": "SUCCESS"}, None)
    late = api.post(url, params={**lease, "offset": 4}, content=b'"late"\n')
    assert late.status_code == 409 and "Lease lost" in late.json()["detail"]
    assert api.get("/state/000000000000000000000000/stream").status_code == 404
    assert api.get(url, params={"from": -1}).status_code == 422
    assert run(api, run_id)["status"] == "SUCCESS"


def test_run_watch_stream_prints_the_running_states_text_live_and_exits_with_the_run(
    server: ServerProcess, api: httpx.Client, namespace: str, runtime: Path
) -> None:
    _talk_graph(api, namespace)
    gate = runtime / "gate"
    run_id = trigger(api, "talk", store={"count": "40", "gate": str(gate)})
    env = {
        **os.environ,
        "EXOSPHERE_STATE_MANAGER_URI": server.url,
        "EXOSPHERE_API_KEY": server.api_key,
        "EXOSPHERE_NAMESPACE": namespace,
    }
    output = runtime / "watch.out"
    with open(output, "wb") as out:
        watch = subprocess.Popen(
            [sys.executable, "-m", "exospherehost.cli", "run", "watch", run_id, "--stream"], env=env, stdout=out
        )
    try:
        first_half = "".join(f"word{i} " for i in range(20))
        wait_until(lambda: first_half in output.read_text(), what="the first half of the text, while Talk runs")
        assert run(api, run_id)["status"] == "PENDING"
        gate.touch()
        assert watch.wait(timeout=120) == 0
    finally:
        watch.kill()
    [state] = states(api, run_id)
    text = output.read_text()
    assert f"[talk {state['state_id']}]\n" + "".join(f"word{i} " for i in range(40)) + "\n" in text


def test_a_reader_on_another_replica_gets_the_chunks_live_and_the_end(
    backend: str, make_server: Callable[..., ServerProcess], server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    if backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database; one SQLite file has one server")
    other = make_server(server.database_url)
    register(api, {"Manual": ((), ())})
    upsert(api, "manual", [node("manual", "Manual", namespace)])
    trigger(api, "manual")
    [state] = claim_all(api, "Manual", count=1)
    url, lease = f"/state/{state['state_id']}/stream", {"lease_id": state["lease_id"]}
    headers = {"x-api-key": other.api_key}
    with (
        httpx.Client(base_url=f"{other.url}/v0/namespace/{namespace}", headers=headers, timeout=30) as replica,
        replica.stream("GET", url) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        got: list[str] = []

        def next_event() -> tuple[str, dict[str, Any], str | None]:
            count = len(_sse(got))
            for line in lines:
                got.append(line)
                if len(_sse(got)) > count:
                    break
            return _sse(got)[-1]

        # Each chunk stored through the first replica reaches the reader on the other one while the
        # attempt still runs: NOTIFY, not the attempt's end, wakes it.
        assert api.post(url, params={**lease, "offset": 0}, content=b'"one"\n').status_code == 200
        assert next_event() == ("chunk", {"attempt": 1, "offset": 0, "text": "one"}, "0")
        assert api.post(url, params={**lease, "offset": 1}, content=b'"two"\n').status_code == 200
        assert next_event() == ("chunk", {"attempt": 1, "offset": 1, "text": "two"}, "1")
        assert executed(api, state).status_code == 200
        assert next_event() == ("end", {"attempt": 1, "next_offset": 2, "status": "SUCCESS"}, None)


async def test_stream_state_goes_on_across_a_server_killed_mid_stream_without_loss_or_repeat(
    make_server: Callable[..., ServerProcess], namespace: str, tmp_path: Path
) -> None:
    own = make_server()  # its own server: this test kills it
    headers = {"x-api-key": own.api_key}
    with (
        httpx.Client(base_url=f"{own.url}/v0/namespace/{namespace}", headers=headers, timeout=30) as api,
        running_runtime(own, namespace, tmp_path),
    ):
        _talk_graph(api, namespace)
        gate = tmp_path / "gate"
        run_id = trigger(api, "talk", store={"count": "40", "gate": str(gate)})
        wait_until(lambda: states(api, run_id) and states(api, run_id)[0]["status"] == "QUEUED", what="Talk to run")
        [state] = states(api, run_id)
        got: list[str] = []
        halfway = asyncio.Event()
        async with StateManager(namespace, state_manager_uri=own.url, key=own.api_key) as sm:

            async def follow() -> None:
                async for chunk in sm.stream_state(state["state_id"]):
                    got.append(chunk.text)
                    if len(got) == 20:
                        halfway.set()

            following = asyncio.create_task(follow())
            await asyncio.wait_for(halfway.wait(), 120)
            await asyncio.to_thread(own.kill)
            await asyncio.to_thread(own.start)
            gate.touch()  # the node streams the second half to the restarted server
            await asyncio.wait_for(following, 120)
        assert got == [f"word{i} " for i in range(40)]
        assert _finished(api, run_id)["status"] == "SUCCESS"
