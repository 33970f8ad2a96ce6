"""The SDK against a real server: cron triggers carry `inputs`/`store`, and answers come back as the
server sent them (parsed with `exospherehost.contract`, handed on with the same keys)."""

from __future__ import annotations

import asyncio
import os
import uuid

import httpx
import pytest
from exospherehost import (
    BaseNode,
    CronTrigger,
    GraphNodeModel,
    GraphValidationError,
    Runtime,
    StateManager,
    StoreConfigModel,
)
from exospherehost.contract import GraphResponse
from pydantic import BaseModel

pytestmark = pytest.mark.asyncio


class Report(BaseNode):
    class Inputs(BaseModel):
        day: str

    class Outputs(BaseModel):
        line: str

    async def execute(self) -> Outputs:
        return self.Outputs(line=f"report for {self.inputs.day}")


def report_graph(namespace: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(node_name="Report", namespace=namespace, identifier="report", inputs={"day": "${{ store.day }}"})
    ]


def raw(server_url: str, namespace: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{server_url}/v0/namespace/{namespace}", headers={"x-api-key": os.environ["EXOSPHERE_API_KEY"]}
    )


async def test_a_cron_trigger_sends_its_inputs_and_store_and_the_graph_keeps_them(env: str) -> None:
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    sm = StateManager(namespace=namespace)
    # `day` is a required store key without a default: only the trigger's store lets cron runs start.
    cron = CronTrigger(expression="0 6 * * *", inputs={"day": "ignored by the template"}, store={"day": "monday"})
    graph = await sm.upsert_graph(
        "daily", report_graph(namespace), {}, store_config=StoreConfigModel(required_keys=["day"]), triggers=[cron]
    )
    assert graph["validation_status"] == "VALID", graph
    value = {"expression": "0 6 * * *", "inputs": {"day": "ignored by the template"}, "store": {"day": "monday"}}
    assert graph["triggers"] == [{"type": "CRON", "value": value}]
    assert (await sm.get_graph("daily"))["triggers"] == [{"type": "CRON", "value": value}]

    without_store = CronTrigger(expression="0 6 * * *")
    with pytest.raises(GraphValidationError, match="required store key"):
        await sm.upsert_graph(
            "daily",
            report_graph(namespace),
            {},
            store_config=StoreConfigModel(required_keys=["day"]),
            triggers=[without_store],
        )


async def test_answers_are_handed_on_with_the_keys_the_server_sent(env: str) -> None:
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    sm = StateManager(namespace=namespace)
    runtime = Runtime(namespace=namespace, name="it", nodes=[Report], shutdown_grace_seconds=5)
    task = runtime.start()
    assert task is not None
    try:
        graph = await sm.upsert_graph(
            "once",
            report_graph(namespace),
            {},
            store_config=StoreConfigModel(default_values={"day": "any day"}),
            triggers=[CronTrigger(expression="0 0 1 1 *", store={"day": "d"})],
        )
        run = await sm.trigger("once", store={"day": "tuesday"})
        summary = await sm.wait_for_run(run["run_id"], timeout=60)
        states = await sm.get_run_states(run["run_id"])
        GraphResponse.model_validate(graph)
        # Read again now that the run is over: the runtime's registration has re-validated the graph.
        graph = await sm.get_graph("once")
        async with raw(env, namespace) as api:
            assert graph == (await api.get("/graph/once")).json()
            assert summary == (await api.get(f"/run/{run['run_id']}")).json()
            assert states == (await api.get(f"/run/{run['run_id']}/states")).json()["states"]
        assert summary["status"] == "SUCCESS" and states[0]["outputs"] == {"line": "report for tuesday"}
        assert set(run) == {"status", "run_id", "duplicate"}
    finally:
        runtime.stop()
        await asyncio.wait_for(task, 60)
