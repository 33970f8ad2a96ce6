"""The examples of the SDK's user documentation, run against a real server."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from exospherehost import (
    BaseNode,
    CronTrigger,
    GraphNodeModel,
    GraphValidationError,
    RetryPolicyModel,
    RetryStrategyEnum,
    Runtime,
    StateManager,
    StoreConfigModel,
)
from pydantic import BaseModel

pytestmark = pytest.mark.asyncio


class SampleNode(BaseNode):
    class Inputs(BaseModel):
        name: str
        data: str

    class Outputs(BaseModel):
        message: str
        processed_data: str

    async def execute(self) -> Outputs:
        return self.Outputs(message="success", processed_data=f"completed:{self.inputs.data}")


class ConfigurableNode(BaseNode):
    class Inputs(BaseModel):
        text: str
        max_length: str = "100"

    class Outputs(BaseModel):
        result: str
        length: str

    async def execute(self) -> Outputs:
        result = self.inputs.text[: int(self.inputs.max_length)]
        return self.Outputs(result=result, length=str(len(result)))


class RobustNode(BaseNode):
    class Inputs(BaseModel):
        data: str

    class Outputs(BaseModel):
        success: str
        result: str

    async def execute(self) -> Outputs:
        raise Exception("This is a test error")  # as in the user docs


class SecretNode(BaseNode):
    class Inputs(BaseModel):
        user_id: str

    class Outputs(BaseModel):
        key_length: str

    class Secrets(BaseModel):
        api_key: str

    async def execute(self) -> Outputs:
        return self.Outputs(key_length=str(len(self.secrets.api_key)))


def _graph(namespace: str, node: str, inputs: dict[str, str]) -> list[GraphNodeModel]:
    return [GraphNodeModel(node_name=node, namespace=namespace, identifier="only", inputs=inputs, next_nodes=[])]


async def _serve(namespace: str, *nodes: type[BaseNode]) -> tuple[Runtime, asyncio.Task[None]]:
    runtime = Runtime(namespace=namespace, name="it", nodes=list(nodes), shutdown_grace_seconds=5)
    task = runtime.start()
    assert task is not None
    await asyncio.sleep(0.5)  # registered
    return runtime, task


async def test_a_node_runs_and_its_run_succeeds(env: str) -> None:
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    runtime, task = await _serve(namespace, SampleNode, ConfigurableNode)
    sm = StateManager(namespace=namespace)
    graph = await sm.upsert_graph("g", _graph(namespace, "SampleNode", {"name": "a", "data": "x"}), secrets={})
    assert graph["validation_status"] == "VALID"
    run = await sm.trigger("g", inputs={"name": "n", "data": "payload"})
    summary = await sm.wait_for_run(run["run_id"], timeout=30)
    states = await sm.get_run_states(run["run_id"])
    runtime.stop()
    await task
    assert summary["status"] == "SUCCESS"
    assert states[0]["outputs"] == {"message": "success", "processed_data": "completed:payload"}


async def test_an_exception_fails_the_state_with_its_message(env: str) -> None:
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    runtime, task = await _serve(namespace, RobustNode)
    sm = StateManager(namespace=namespace)
    policy = RetryPolicyModel(max_retries=0, strategy=RetryStrategyEnum.EXPONENTIAL, backoff_factor=2000, exponent=2)
    await sm.upsert_graph("g", _graph(namespace, "RobustNode", {"data": "d"}), secrets={}, retry_policy=policy)
    run = await sm.trigger("g")
    summary = await sm.wait_for_run(run["run_id"], timeout=30)
    states = await sm.get_run_states(run["run_id"])
    runtime.stop()
    await task
    assert summary["status"] == "FAILED"
    assert states[0]["error"] == "Exception: This is a test error"


async def test_secrets_reach_the_node(env: str) -> None:
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    runtime, task = await _serve(namespace, SecretNode)
    sm = StateManager(namespace=namespace)
    await sm.upsert_graph("g", _graph(namespace, "SecretNode", {"user_id": "u"}), secrets={"api_key": "12345"})
    run = await sm.trigger("g")
    await sm.wait_for_run(run["run_id"], timeout=30)
    states = await sm.get_run_states(run["run_id"])
    runtime.stop()
    await task
    assert states[0]["outputs"] == {"key_length": "5"}


async def test_the_documented_upsert_with_store_retry_policy_and_cron(env: str) -> None:
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    sm = StateManager(namespace=namespace)
    graph_nodes = [
        GraphNodeModel(
            node_name="DataProcessorNode",
            namespace=namespace,
            identifier="data_processor",
            inputs={"source": "initial", "format": "json"},
            next_nodes=["data_validator"],
        ),
        GraphNodeModel(
            node_name="DataValidatorNode",
            namespace=namespace,
            identifier="data_validator",
            inputs={"data": "${{ data_processor.outputs.processed_data }}", "validation_rules": "initial"},
            next_nodes=[],
        ),
    ]
    # The documented nodes are not registered here: the server accepts the graph and warns about them.
    result = await sm.upsert_graph(
        graph_name="my-workflow",
        graph_nodes=graph_nodes,
        secrets={"api_key": "your-api-key", "database_url": "your-database-url"},
        retry_policy=RetryPolicyModel(
            max_retries=3, strategy=RetryStrategyEnum.EXPONENTIAL, backoff_factor=2000, exponent=2
        ),
        # A cron run has no caller to give the store: each required key needs a default.
        store_config=StoreConfigModel(
            required_keys=["cursor", "batch_id"],
            default_values={"cursor": "0", "batch_id": "scheduled", "batch_size": "100"},
        ),
        triggers=[CronTrigger(expression="0 9 * * 1-5"), CronTrigger(expression="0 */6 * * *")],
        validation_timeout=60,
        polling_interval=1,
    )
    assert result["validation_status"] == "VALID"
    assert any("DataProcessorNode" in str(warning) for warning in result.get("validation_warnings", []))


async def test_a_structurally_invalid_graph_raises_with_the_servers_reason(env: str) -> None:
    sm = StateManager(namespace=f"it-{uuid.uuid4().hex[:8]}")
    two_roots = [
        GraphNodeModel(node_name="A", namespace="x", identifier="a", next_nodes=[]),
        GraphNodeModel(node_name="B", namespace="x", identifier="b", next_nodes=[]),
    ]
    with pytest.raises(GraphValidationError) as caught:
        await sm.upsert_graph("g", two_roots, secrets={})
    assert any("root" in error for error in caught.value.errors)
