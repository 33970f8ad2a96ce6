"""Payloads go with their runs, on a real SQLite file and a real PostgreSQL: retention deletes a finished
run's payloads with it, and the sweep removes the payload files a crash left without a run."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from exosphere_server.clock import now_ms
from exosphere_server.engine import graphs, runs, transitions
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.storage import open_storage, schema
from exosphere_server.storage.payloads import FilePayloadStore
from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel

from tests.conftest import database_url

SCHEMA = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
BIG = "payload " * 20_000  # 160 KB: over the 64 KiB default threshold


@pytest.fixture
async def ctx(backend: str, tmp_path: Path) -> AsyncIterator[EngineContext]:
    storage = open_storage(database_url(backend, tmp_path))
    await storage.start()
    context = EngineContext(storage=storage, box=SecretBox(b"k" * 32))
    await graphs.register_nodes(
        context, "ns", "rt", [{"name": "Echo", "inputs_schema": SCHEMA, "outputs_schema": SCHEMA, "secrets": []}]
    )
    await graphs.upsert_graph(
        context,
        "ns",
        "g",
        nodes=[GraphNodeModel(node_name="Echo", namespace="ns", identifier="e", inputs={"x": "small"})],
        secrets={},
        retry_policy=RetryPolicyModel(),
        store_config=StoreConfigModel(),
        triggers=[],
    )
    try:
        yield context
    finally:
        await storage.close()


async def _stored_payloads(ctx: EngineContext, run_id: str) -> set[str]:
    """The keys of the payloads kept for a run: its files (SQLite) or its rows (PostgreSQL)."""
    store = ctx.storage.payload_store
    if isinstance(store, FilePayloadStore):
        directory = store.root / run_id
        return {p.name for p in directory.iterdir()} if directory.exists() else set()
    async with ctx.storage.reader() as tx:
        p = schema.payloads
        return {row[0] for row in await tx.conn.execute(sa.select(p.c.key).where(p.c.run_id == run_id))}


async def test_retention_deletes_a_finished_runs_payloads_and_keeps_a_live_runs(ctx: EngineContext) -> None:
    done = (await runs.trigger(ctx, "ns", "g", runs.RunRequest(inputs={"x": BIG}))).run_id
    [state] = await transitions.claim(ctx, "ns", ["Echo"], 1)
    assert state.inputs == {"x": BIG}
    await transitions.executed(ctx, "ns", state.id, [{"x": BIG + "out"}], state.lease_id)
    live = (await runs.trigger(ctx, "ns", "g", runs.RunRequest(inputs={"x": BIG}))).run_id
    big_key = hashlib.sha256(BIG.encode()).hexdigest()
    assert await _stored_payloads(ctx, done) == {big_key, hashlib.sha256((BIG + "out").encode()).hexdigest()}
    assert await _stored_payloads(ctx, live) == {big_key}  # the same text, kept per run

    assert await runs.delete_finished_runs(ctx, now_ms() + 1000, limit=100) == 1
    assert await _stored_payloads(ctx, done) == set()
    assert await _stored_payloads(ctx, live) == {big_key}
    [still] = await transitions.claim(ctx, "ns", ["Echo"], 1)
    assert still.run_id == live and still.inputs == {"x": BIG}


async def test_the_sweep_removes_old_payload_files_of_runs_that_do_not_exist(ctx: EngineContext) -> None:
    store = ctx.storage.payload_store
    if not isinstance(store, FilePayloadStore):
        pytest.skip("PostgreSQL writes payload rows in the transaction of their run: none is ever left over")
    kept = (await runs.trigger(ctx, "ns", "g", runs.RunRequest(inputs={"x": BIG}))).run_id
    hour_ago = time.time() - 2 * 3600
    os.utime(store.root / kept, (hour_ago, hour_ago))
    for name, when in (("crashed-old", hour_ago), ("in-flight", time.time())):
        (store.root / name).mkdir()
        (store.root / name / "deadbeef").write_text("left by a crash")
        os.utime(store.root / name, (when, when))

    assert await runs.sweep_orphan_payloads(ctx, now_ms()) == 1
    assert sorted(p.name for p in store.root.iterdir()) == sorted([kept, "in-flight"])
