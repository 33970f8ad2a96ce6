"""StateManager's inspection methods (what the `exosphere` CLI is built on) against a real server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from exospherehost import ApiError, BaseNode, ConflictError, NotFoundError, Runtime, StateManager
from pydantic import BaseModel

NO_USAGE = {"input_tokens": 0, "output_tokens": 0, "requests": 0, "cost_usd": 0.0}  # Shout reports none
pytestmark = pytest.mark.asyncio


class Shout(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        if self.inputs.text == "fail":
            raise ValueError("asked to fail")
        return self.Outputs(text=self.inputs.text.upper())


@pytest_asyncio.fixture
async def sm(env: str) -> AsyncIterator[StateManager]:
    """A StateManager on a fresh namespace whose runtime serves Shout (registered before the test)."""
    namespace = f"insp-{uuid.uuid4().hex[:8]}"
    runtime = Runtime(namespace=namespace, name="inspection", nodes=[Shout], shutdown_grace_seconds=5)
    task = runtime.start()
    assert task is not None
    async with StateManager(namespace) as manager:
        while not (await manager.list_nodes())["nodes"]:
            assert not task.done(), task
            await asyncio.sleep(0.05)
        yield manager
    runtime.stop()
    await task


def template(namespace: str, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    inputs = {"text": "${{ store.text }}"} if inputs is None else inputs
    return {
        "secrets": {"token": "never-shown"},
        "nodes": [{"node_name": "Shout", "namespace": namespace, "identifier": "shout", "inputs": inputs}],
        "store_config": {"required_keys": ["text"]},
        "retry_policy": {"max_retries": 0},
    }


async def _namespace(sm: StateManager) -> str:
    return str((await sm.list_nodes())["namespace"])


async def test_apply_list_and_read_graphs(sm: StateManager) -> None:
    namespace = await _namespace(sm)
    first = await sm.apply_graph("shout", template(namespace))
    assert (first["version"], first["validation_status"]) == (1, "VALID")
    mismatch = await sm.apply_graph("mismatch", template(namespace, inputs={"wrong": "1"}))
    assert mismatch["validation_status"] == "INVALID" and mismatch["validation_errors"]
    listed = await sm.list_graphs()
    assert sorted(g["name"] for g in listed["templates"]) == ["mismatch", "shout"]
    assert (await sm.get_graph("shout"))["secrets"] == {"token": True}


async def test_apply_graph_refusals_keep_the_servers_detail(sm: StateManager) -> None:
    namespace = await _namespace(sm)
    two_roots = template(namespace)
    two_roots["nodes"] = [
        {"node_name": "Shout", "namespace": namespace, "identifier": "a"},
        {"node_name": "Shout", "namespace": namespace, "identifier": "b"},
    ]
    with pytest.raises(ApiError) as structural:
        await sm.apply_graph("broken", two_roots)
    assert structural.value.status_code == 400 and "root" in str(structural.value.detail)
    with pytest.raises(ApiError) as malformed:
        await sm.apply_graph("broken", {"secrets": {}, "nodes": [{"identifier": "a"}]})
    assert malformed.value.status_code == 422
    assert malformed.value.detail[0]["loc"][-1] == "node_name"
    assert (await sm.list_graphs())["templates"] == []


async def test_runs_progress_states_and_a_manual_retry(sm: StateManager) -> None:
    namespace = await _namespace(sm)
    await sm.apply_graph("shout", template(namespace))
    good = (await sm.trigger("shout", store={"text": "hi"}))["run_id"]
    bad = (await sm.trigger("shout", store={"text": "fail"}))["run_id"]
    assert (await sm.wait_for_run(good, timeout=60))["status"] == "SUCCESS"
    assert (await sm.wait_for_run(bad, timeout=60))["status"] == "FAILED"

    listed = await sm.list_runs()
    assert listed["total"] == 2 and [r["run_id"] for r in listed["runs"]] == [bad, good]
    assert [r["run_id"] for r in (await sm.list_runs(status="FAILED"))["runs"]] == [bad]
    assert (await sm.list_runs(1, 1, graph_name="other"))["total"] == 0

    progress = await sm.get_run_progress(good)
    assert progress["finished"] and progress["nodes"] == [
        {"identifier": "shout", "node_name": "Shout", "counts": {"SUCCESS": 1}, "usage": NO_USAGE}
    ]
    [failed] = await sm.get_run_states(bad)
    state = await sm.get_state(failed["state_id"])
    assert state["status"] == "ERRORED" and state["error"] == "ValueError: asked to fail"

    retry = await sm.retry_state(failed["state_id"])
    assert retry["status"] == "CREATED"
    assert (await sm.get_state(failed["state_id"]))["status"] == "RETRY_CREATED"
    with pytest.raises(ConflictError):
        await sm.retry_state(failed["state_id"])
    assert namespace in (await sm.list_namespaces())["namespaces"]


async def test_unknown_run_and_state_are_not_found(sm: StateManager) -> None:
    with pytest.raises(NotFoundError):
        await sm.get_run_progress(str(uuid.uuid4()))
    with pytest.raises(NotFoundError):
        await sm.get_state("0123456789abcdef01234567")


async def test_a_large_output_is_listed_by_size_and_read_whole_when_asked(sm: StateManager) -> None:
    namespace = await _namespace(sm)
    await sm.apply_graph("shout", template(namespace))
    text = '"quoted", like JSON ' * 5_000  # 100,000 bytes: over the 64 KiB threshold
    run_id = (await sm.trigger("shout", store={"text": text}))["run_id"]
    assert (await sm.wait_for_run(run_id, timeout=60))["status"] == "SUCCESS"
    [listed] = await sm.get_run_states(run_id)
    assert listed["outputs"] == {} and listed["large_outputs"]["text"]["bytes"] == len(text)
    assert (await sm.get_state(listed["state_id"], payloads=True))["outputs"] == {"text": text.upper()}
    assert await sm.get_state_payload(listed["state_id"], "inputs", "text") == text
    with pytest.raises(NotFoundError):
        await sm.get_state_payload(listed["state_id"], "outputs", "missing")
