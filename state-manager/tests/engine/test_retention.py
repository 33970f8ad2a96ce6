"""Retention on a real SQLite file: finished runs older than the cut are deleted, live ones never."""

from __future__ import annotations

from pathlib import Path

from exosphere_server.clock import now_ms
from exosphere_server.engine import cancellation, graphs, live_streams, runs, transitions
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.storage.sqlite import SqliteStorage
from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel

from .echo_graph import add_echo_graph


async def test_only_finished_runs_older_than_the_cut_are_deleted_with_their_streams(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "exosphere.db")
    await storage.start()
    ctx = EngineContext(storage=storage, box=SecretBox(b"k" * 32))
    try:
        await add_echo_graph(ctx)
        done = (await runs.trigger(ctx, "ns", "g", runs.RunRequest())).run_id
        [state] = await transitions.claim(ctx, "ns", ["Echo"], 1)
        await ctx.stream_writer.write(live_streams.chunk_records(state.id, 1, 0, ["streamed"]))
        await transitions.executed(ctx, "ns", state.id, [{"x": "1"}], state.lease_id)
        live = (await runs.trigger(ctx, "ns", "g", runs.RunRequest())).run_id
        async with storage.reader() as tx:
            assert await tx.stream_chunks(state.id, 1, 0, 10) == [(0, "streamed")]
        async with storage.transaction() as tx:
            assert await tx.delete_finished_runs(older_than=now_ms() + 1000, limit=100) == 1
        async with storage.reader() as tx:
            assert await tx.get_run(done) is None
            assert await tx.states_of_run(done) == []
            assert await tx.stream_chunks(state.id, 1, 0, 10) == []  # its streams go with it
            assert await tx.get_run(live) is not None and len(await tx.states_of_run(live)) == 1
    finally:
        await storage.close()


async def test_a_cancelled_run_is_finished_for_retention_and_its_cancel_record_goes_with_it(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "exosphere.db")
    await storage.start()
    ctx = EngineContext(storage=storage, box=SecretBox(b"k" * 32))
    try:
        await graphs.upsert_graph(
            ctx,
            "ns",
            "g",
            nodes=[GraphNodeModel(node_name="Echo", namespace="ns", identifier="e", inputs={"x": "1"})],
            secrets={},
            retry_policy=RetryPolicyModel(),
            store_config=StoreConfigModel(),
            triggers=[],
        )
        cancelled = (await runs.trigger(ctx, "ns", "g", runs.RunRequest())).run_id
        assert (await cancellation.cancel_run(ctx, "ns", cancelled, "stop")).cancelled_states == 1
        async with storage.transaction() as tx:
            assert await tx.delete_finished_runs(older_than=now_ms() + 1000, limit=100) == 1
        async with storage.reader() as tx:
            assert await tx.get_run(cancelled) is None
            assert await tx.get_run_cancellation(cancelled) is None
    finally:
        await storage.close()
