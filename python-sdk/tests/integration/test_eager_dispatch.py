"""The runtime takes its next states from the answers to its results (eager dispatch), against a real server."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from exosphere_testing import ServerProcess
from exospherehost import BaseNode, GraphNodeModel, Runtime, StateManager, StoreConfigModel
from pydantic import BaseModel

pytestmark = pytest.mark.asyncio
DEPTH = 8


class Step(BaseNode):
    class Inputs(BaseModel):
        n: str

    class Outputs(BaseModel):
        n: str

    async def execute(self) -> Outputs:
        return self.Outputs(n=str(int(self.inputs.n) + 1))


def _chain(namespace: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Step",
            namespace=namespace,
            identifier=f"step{i}",
            inputs={"n": "${{ store.n }}" if i == 0 else f"${{{{ step{i - 1}.outputs.n }}}}"},
            next_nodes=[f"step{i + 1}"] if i + 1 < DEPTH else [],
        )
        for i in range(DEPTH)
    ]


def _counter(server: ServerProcess, name: str, namespace: str) -> float:
    text = httpx.get(server.url + "/metrics", headers={"x-api-key": server.api_key}).text
    pattern = rf'^{name}\{{namespace="{re.escape(namespace)}",node="Step"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_chain_runs_with_every_next_state_carried_by_the_answer_to_a_result(
    env: str, server: ServerProcess
) -> None:
    namespace = f"eager-{uuid.uuid4().hex[:8]}"
    sm = StateManager(namespace=namespace)
    await sm.upsert_graph("chain", _chain(namespace), secrets={}, store_config=StoreConfigModel(required_keys=["n"]))
    runtime = Runtime(namespace=namespace, name="eager", nodes=[Step])  # the default arguments
    task = runtime.start()
    assert task is not None
    try:
        run = await sm.trigger("chain", store={"n": "0"})
        summary = await sm.wait_for_run(run["run_id"], timeout=60)
        states = await sm.get_run_states(run["run_id"])
    finally:
        runtime.stop()
        await task
    assert summary["status"] == "SUCCESS", summary
    assert sorted(int(s["outputs"]["n"]) for s in states) == list(range(1, DEPTH + 1))
    # The root came from a claim; every later step came with the answer to its parent's result.
    assert _counter(server, "exosphere_claims_total", namespace) == DEPTH
    assert _counter(server, "exosphere_eager_claims_total", namespace) == DEPTH - 1
