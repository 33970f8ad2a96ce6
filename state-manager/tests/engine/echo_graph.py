"""The smallest graph the engine tests work on: node `Echo` (one text field `x`) and graph `g` of one state."""

from __future__ import annotations

from exosphere_server.engine import graphs
from exosphere_server.engine.context import EngineContext
from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel

SCHEMA = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}


async def register_echo(ctx: EngineContext) -> None:
    """Register node `Echo` (one text field `x` in and out) for runtime `rt` in namespace `ns`.

    Example::

        await register_echo(ctx)
        await graphs.upsert_graph(ctx, "ns", "chain", nodes=[...], ...)
    """
    await graphs.register_nodes(
        ctx, "ns", "rt", [{"name": "Echo", "inputs_schema": SCHEMA, "outputs_schema": SCHEMA, "secrets": []}]
    )


async def add_echo_graph(ctx: EngineContext, x: str = "1") -> None:
    """Register `Echo` for runtime `rt` in namespace `ns` and upsert graph `g`: one state `e` with input `x`.

    Example::

        await add_echo_graph(ctx)
        await runs.trigger(ctx, "ns", "g", runs.RunRequest())
    """
    await register_echo(ctx)
    await graphs.upsert_graph(
        ctx,
        "ns",
        "g",
        nodes=[GraphNodeModel(node_name="Echo", namespace="ns", identifier="e", inputs={"x": x})],
        secrets={},
        retry_policy=RetryPolicyModel(),
        store_config=StoreConfigModel(),
        triggers=[],
    )
