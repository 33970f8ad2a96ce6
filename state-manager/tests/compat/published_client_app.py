"""Runs under the published `exospherehost==0.0.3` client (Python >= 3.12), unchanged API, against our server.

Prints `RUN <run_id>` once the run is triggered, then keeps its runtime working until killed.
"""

import asyncio
import os
from datetime import timedelta

from exospherehost import (
    BaseNode,
    GraphNodeModel,
    PruneSignal,
    ReQueueAfterSignal,
    RetryPolicyModel,
    RetryStrategyEnum,
    Runtime,
    StateManager,
    StoreConfigModel,
    UnitesModel,
    UnitesStrategyEnum,
)
from pydantic import BaseModel

NAMESPACE = os.environ["COMPAT_NAMESPACE"]
seen: set[str] = set()


class Start(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self):
        if "start" not in seen:
            seen.add("start")
            raise ReQueueAfterSignal(timedelta(milliseconds=300))
        return self.Outputs(text=self.inputs.text)


class Splitter(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        part: str

    async def execute(self):
        return [self.Outputs(part=p) for p in self.inputs.text.split()]


class Worker(BaseNode):
    class Inputs(BaseModel):
        part: str

    class Outputs(BaseModel):
        out: str

    class Secrets(BaseModel):
        api_key: str

    async def execute(self):
        if self.inputs.part == "skip":
            raise PruneSignal({"reason": "skipped"})
        return self.Outputs(out=f"{self.inputs.part.upper()}:{len(self.secrets.api_key)}")


class Flaky(BaseNode):
    class Inputs(BaseModel):
        value: str

    class Outputs(BaseModel):
        value: str

    async def execute(self):
        if self.inputs.value not in seen:
            seen.add(self.inputs.value)
            raise RuntimeError(f"first attempt of {self.inputs.value} fails")
        return self.Outputs(value=self.inputs.value)


class Merger(BaseNode):
    class Inputs(BaseModel):
        summary: str

    class Outputs(BaseModel):
        summary: str

    async def execute(self):
        return self.Outputs(summary=f"merged {self.inputs.summary}")


async def main() -> None:
    runtime = Runtime(namespace=NAMESPACE, name="compat", nodes=[Start, Splitter, Worker, Flaky, Merger])
    task = runtime.start()
    await asyncio.sleep(1)
    manager = StateManager(namespace=NAMESPACE)
    nodes = [
        GraphNodeModel(
            node_name="Start",
            namespace=NAMESPACE,
            identifier="start",
            inputs={"text": "${{ store.text }}"},
            next_nodes=["split"],
        ),
        GraphNodeModel(
            node_name="Splitter",
            namespace=NAMESPACE,
            identifier="split",
            inputs={"text": "${{ start.outputs.text }}"},
            next_nodes=["work"],
        ),
        GraphNodeModel(
            node_name="Worker",
            namespace=NAMESPACE,
            identifier="work",
            inputs={"part": "${{ split.outputs.part }}"},
            next_nodes=["flaky"],
        ),
        GraphNodeModel(
            node_name="Flaky",
            namespace=NAMESPACE,
            identifier="flaky",
            inputs={"value": "${{ work.outputs.out }}"},
            next_nodes=["merge"],
        ),
        GraphNodeModel(
            node_name="Merger",
            namespace=NAMESPACE,
            identifier="merge",
            inputs={"summary": "${{ start.outputs.text }}"},
            unites=UnitesModel(identifier="start", strategy=UnitesStrategyEnum.ALL_DONE),
        ),
    ]
    graph = await manager.upsert_graph(
        "compat",
        nodes,
        secrets={"api_key": "sekret"},
        retry_policy=RetryPolicyModel(max_retries=2, strategy=RetryStrategyEnum.FIXED, backoff_factor=100),
        store_config=StoreConfigModel(required_keys=["text"]),
    )
    assert graph["validation_status"] == "VALID", graph
    result = await manager.trigger("compat", store={"text": "a b skip"})
    print("RUN", result["run_id"], flush=True)
    await task


asyncio.run(main())
