"""The demo's workflow, on its own: nodes, graph and one run, against any state manager.

    python daily_digest.py URL API_KEY     # exits 1 unless the run succeeds

The graph: `plan` cleans the request, `topics` fans out one state per topic, `summarize` runs once
per topic (in parallel on the runtime's workers), and `digest` waits for everything that descends from
`plan` (a `unites` on the fan-out's predecessor) and writes one report. It needs only the SDK, so a
release's wheels run it with no checkout around (`state-manager/tests/release/`); `demo.py` runs it
beside a server of its own.
"""

from __future__ import annotations

import asyncio
import sys
import time

from exospherehost import BaseNode, GraphNodeModel, RunStatus, Runtime, StateManager, StoreConfigModel, UnitesModel
from pydantic import BaseModel

NAMESPACE = "demo"


class Plan(BaseNode):
    class Inputs(BaseModel):
        topics: str

    class Outputs(BaseModel):
        topics: str

    async def execute(self) -> Outputs:
        return self.Outputs(topics=",".join(t.strip() for t in self.inputs.topics.split(",") if t.strip()))


class ListTopics(BaseNode):
    class Inputs(BaseModel):
        topics: str

    class Outputs(BaseModel):
        topic: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(topic=t) for t in self.inputs.topics.split(",")]


class Summarize(BaseNode):
    class Inputs(BaseModel):
        topic: str
        style: str

    class Outputs(BaseModel):
        summary: str

    async def execute(self) -> Outputs:
        await asyncio.sleep(0.05)  # stands in for a model call
        return self.Outputs(
            summary=f"{self.inputs.topic}: {self.inputs.style} summary ({len(self.inputs.topic)} chars)"
        )


class Digest(BaseNode):
    class Inputs(BaseModel):
        title: str

    class Outputs(BaseModel):
        report: str

    async def execute(self) -> Outputs:
        return self.Outputs(report=f"Digest '{self.inputs.title}' is ready")


async def run_daily_digest(url: str, key: str) -> bool:
    """Register the nodes, upsert the graph, run it once and print its states; True when it succeeded."""
    runtime = Runtime(
        namespace=NAMESPACE,
        name="demo-runtime",
        nodes=[Plan, ListTopics, Summarize, Digest],
        state_manager_uri=url,
        key=key,
    )
    worker = runtime.start()
    manager = StateManager(namespace=NAMESPACE, state_manager_uri=url, key=key)
    graph = await manager.upsert_graph(
        "daily-digest",
        [
            GraphNodeModel(
                node_name="Plan",
                namespace=NAMESPACE,
                identifier="plan",
                inputs={"topics": "${{ store.topics }}"},
                next_nodes=["topics"],
            ),
            GraphNodeModel(
                node_name="ListTopics",
                namespace=NAMESPACE,
                identifier="topics",
                inputs={"topics": "${{ plan.outputs.topics }}"},
                next_nodes=["summarize"],
            ),
            GraphNodeModel(
                node_name="Summarize",
                namespace=NAMESPACE,
                identifier="summarize",
                inputs={"topic": "${{ topics.outputs.topic }}", "style": "${{ store.style }}"},
                next_nodes=["digest"],
            ),
            GraphNodeModel(
                node_name="Digest",
                namespace=NAMESPACE,
                identifier="digest",
                inputs={"title": "${{ plan.outputs.topics }}"},
                unites=UnitesModel(identifier="plan"),
            ),
        ],
        secrets={},
        store_config=StoreConfigModel(required_keys=["topics"], default_values={"style": "short"}),
    )
    print(f"graph 'daily-digest': {graph['validation_status']}")
    started = time.perf_counter()
    run = await manager.trigger("daily-digest", store={"topics": "agents, retrieval, evaluation, tooling"})
    result = await manager.wait_for_run(run["run_id"], timeout=60)
    elapsed = time.perf_counter() - started
    states = await manager.get_run_states(run["run_id"])
    print(f"run {run['run_id']}: {result['status']} in {elapsed * 1000:.0f} ms, {len(states)} states")
    for state in states:
        print(f"  {state['identifier']:<10} {state['status']:<8} {state['outputs']}")
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    return bool(result["status"] == RunStatus.SUCCESS)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python daily_digest.py URL API_KEY")
    raise SystemExit(0 if asyncio.run(run_daily_digest(sys.argv[1], sys.argv[2])) else 1)
