"""Outputs the state manager cannot take fail their state clearly, and the runtime keeps working."""

from __future__ import annotations

import uuid

import pytest
from exospherehost import BaseNode, GraphNodeModel, RetryPolicyModel, RetryStrategyEnum, Runtime, StateManager
from pydantic import BaseModel

pytestmark = pytest.mark.asyncio


class ListFiles(BaseNode):
    class Inputs(BaseModel):
        folder: str

    class Outputs(BaseModel):
        path: str

    async def execute(self) -> Outputs:
        # What os.listdir returns for a file name that is not UTF-8 (b"abc\xff").
        return self.Outputs(path=self.inputs.folder + b"abc\xff".decode("utf-8", "surrogateescape"))


class Echo(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        return self.Outputs(text=self.inputs.text)


def _graph(namespace: str, node: str, inputs: dict[str, str]) -> list[GraphNodeModel]:
    return [GraphNodeModel(node_name=node, namespace=namespace, identifier="only", inputs=inputs, next_nodes=[])]


async def test_an_output_with_a_lone_surrogate_fails_its_state_and_the_runtime_keeps_working(env: str) -> None:
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    sm = StateManager(namespace=namespace)
    policy = RetryPolicyModel(max_retries=1, strategy=RetryStrategyEnum.EXPONENTIAL, backoff_factor=1, exponent=1)
    await sm.upsert_graph("files", _graph(namespace, "ListFiles", {"folder": ""}), secrets={}, retry_policy=policy)
    await sm.upsert_graph("echo", _graph(namespace, "Echo", {"text": "x"}), secrets={})
    # One worker: had the bad state stuck it, the next state would never run.
    runtime = Runtime(namespace=namespace, name="it", nodes=[ListFiles, Echo], workers=1, shutdown_grace_seconds=5)
    task = runtime.start()
    assert task is not None
    try:
        bad = await sm.trigger("files")
        bad_summary = await sm.wait_for_run(bad["run_id"], timeout=60)
        good = await sm.trigger("echo", inputs={"text": "still working"})
        good_summary = await sm.wait_for_run(good["run_id"], timeout=60)
        bad_states = await sm.get_run_states(bad["run_id"])
        good_states = await sm.get_run_states(good["run_id"])
    finally:
        runtime.stop()
        await task
    assert bad_summary["status"] == "FAILED"
    assert [state["status"] for state in bad_states] == ["RETRY_CREATED", "ERRORED"]  # the first try and its retry
    for state in bad_states:
        assert state["error"] == (
            "UnsendableOutputError: Output field 'path' of node ListFiles is not valid Unicode "
            "(lone surrogate '\\udcff' at position 3): 'abc\\udcff'"
        )
    assert good_summary["status"] == "SUCCESS"
    assert good_states[0]["outputs"] == {"text": "still working"}
