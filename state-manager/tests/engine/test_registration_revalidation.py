"""Node registration on a real SQLite file: only a new or changed schema re-validates, and only the graphs using it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from exosphere_server.engine import graphs
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.storage.sqlite import SqliteStorage
from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel


def schema(*fields: str) -> dict[str, Any]:
    return {"type": "object", "properties": {f: {"type": "string"} for f in fields}, "required": list(fields)}


def registration(name: str, inputs: tuple[str, ...] = ("x",), secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"name": name, "inputs_schema": schema(*inputs), "outputs_schema": schema("y"), "secrets": list(secrets)}


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[EngineContext]:
    storage = SqliteStorage(tmp_path / "exosphere.db")
    await storage.start()
    try:
        yield EngineContext(storage=storage, box=SecretBox(b"k" * 32))
    finally:
        await storage.close()


async def upsert(ctx: EngineContext, namespace: str, name: str, node_name: str) -> str:
    record = await graphs.upsert_graph(
        ctx,
        namespace,
        name,
        nodes=[GraphNodeModel(node_name=node_name, namespace="ns", identifier="only", inputs={"x": "1"})],
        secrets={},
        retry_policy=RetryPolicyModel(),
        store_config=StoreConfigModel(),
        triggers=[],
    )
    return record.validation_status


async def test_unchanged_registration_revalidates_nothing(ctx: EngineContext) -> None:
    await graphs.register_nodes(ctx, "ns", "rt", [registration("A"), registration("B")])
    assert await upsert(ctx, "ns", "uses-a", "A") == "VALID"
    assert await upsert(ctx, "other", "uses-a-too", "A") == "VALID"
    assert await graphs.register_nodes(ctx, "ns", "rt-2", [registration("A"), registration("B")]) == []


async def test_changed_schema_revalidates_exactly_the_graphs_using_the_node(ctx: EngineContext) -> None:
    await graphs.register_nodes(ctx, "ns", "rt", [registration("A"), registration("B")])
    await upsert(ctx, "ns", "uses-a", "A")
    await upsert(ctx, "other", "uses-a-too", "A")
    await upsert(ctx, "ns", "uses-b", "B")
    changed = [registration("A", inputs=("x", "z")), registration("B")]
    assert await graphs.register_nodes(ctx, "ns", "rt", changed) == [("ns", "uses-a"), ("other", "uses-a-too")]
    assert (await graphs.get_graph(ctx, "ns", "uses-a")).validation_status == "INVALID"
    assert (await graphs.get_graph(ctx, "ns", "uses-b")).validation_status == "VALID"
    assert await graphs.register_nodes(ctx, "ns", "rt", [registration("B", secrets=("token",))]) == [("ns", "uses-b")]


async def test_first_registration_revalidates_graphs_waiting_for_it(ctx: EngineContext) -> None:
    await upsert(ctx, "ns", "early", "Late")
    assert (await graphs.get_graph(ctx, "ns", "early")).validation_warnings
    assert await graphs.register_nodes(ctx, "ns", "rt", [registration("Late")]) == [("ns", "early")]
    assert (await graphs.get_graph(ctx, "ns", "early")).validation_warnings == []


async def test_a_graph_no_longer_using_a_node_is_not_revalidated_for_it(ctx: EngineContext) -> None:
    await graphs.register_nodes(ctx, "ns", "rt", [registration("A"), registration("B")])
    await upsert(ctx, "ns", "g", "A")
    await upsert(ctx, "ns", "g", "B")  # the new version replaces the graph's node references
    assert await graphs.register_nodes(ctx, "ns", "rt", [registration("A", inputs=("q",))]) == []
