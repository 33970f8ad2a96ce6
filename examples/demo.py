"""`make demo`: the state manager on embedded SQLite and an example workflow, end to end.

The graph: `plan` cleans the request, `topics` fans out one state per topic, `summarize` runs once
per topic (in parallel on the runtime's workers), and `digest` waits for everything that descends from
`plan` (a `unites` on the fan-out's predecessor) and writes one report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from exosphere_testing import ServerProcess, free_port, sqlite_url
from exospherehost import BaseNode, GraphNodeModel, RunStatus, Runtime, StateManager, StoreConfigModel, UnitesModel
from pydantic import BaseModel

NAMESPACE = "demo"
DATA = Path(os.environ.get("DEMO_DATA_DIR", Path(__file__).resolve().parent.parent / ".demo"))


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


async def main(server: ServerProcess) -> None:
    runtime = Runtime(
        namespace=NAMESPACE,
        name="demo-runtime",
        nodes=[Plan, ListTopics, Summarize, Digest],
        state_manager_uri=server.url,
        key=server.api_key,
    )
    worker = runtime.start()
    manager = StateManager(namespace=NAMESPACE, state_manager_uri=server.url, key=server.api_key)
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
    if result["status"] != RunStatus.SUCCESS:
        raise SystemExit(1)


def where_to_look(server: ServerProcess, keep: bool) -> str:
    url = server.url if keep else "http://127.0.0.1:8000"
    command = f".venv/bin/exosphere server --database-url {sqlite_url(DATA)} --api-key {server.api_key}"
    start = "" if keep else f"  start it again  {command}\n"
    return (
        f"\nWhere to look{' (Ctrl-C stops the server)' if keep else ''}:\n{start}"
        f"  dashboard       {url}/dashboard  (API key {server.api_key})\n"
        f"  command line    .venv/bin/exosphere runs --server {url} --key {server.api_key} --namespace {NAMESPACE}\n"
        f"  API docs        {url}/docs\n"
        f"  metrics         curl -H 'x-api-key: {server.api_key}' {url}/metrics"
    )


if __name__ == "__main__":
    DATA.mkdir(parents=True, exist_ok=True)
    keep = os.environ.get("DEMO_KEEP") == "1"  # `DEMO_KEEP=1 make demo` leaves the server running
    port = int(os.environ.get("DEMO_PORT", free_port()))
    with ServerProcess(sqlite_url(DATA), port=port, log_path=DATA / "server.log") as server:
        print(f"state manager on {server.url} (SQLite file {DATA / 'exosphere.db'}, log {DATA / 'server.log'})")
        asyncio.run(main(server))
        print(where_to_look(server, keep))
        if keep:
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
