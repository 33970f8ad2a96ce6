"""Idempotency keys on a real SQLite file: a live key answers its run, an expired one starts a new run,
and the scheduler's sweep forgets expired keys only."""

from __future__ import annotations

from pathlib import Path

from exosphere_server.clock import now_ms
from exosphere_server.engine import runs
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.scheduler.loop import Scheduler
from exosphere_server.storage import schema
from exosphere_server.storage.sqlite import SqliteStorage

from .echo_graph import add_echo_graph


async def _keys(storage: SqliteStorage) -> set[str]:
    async with storage.reader() as tx:
        return {row.key for row in await tx.conn.execute(schema.trigger_keys.select())}


async def test_an_expired_key_starts_a_new_run_and_the_sweep_forgets_only_expired_keys(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "exosphere.db")
    await storage.start()
    ctx = EngineContext(storage=storage, box=SecretBox(b"k" * 32), idempotency_key_ms=60_000)
    try:
        await add_echo_graph(ctx)
        first = await runs.trigger(ctx, "ns", "g", runs.RunRequest(idempotency_key="old"))
        again = await runs.trigger(ctx, "ns", "g", runs.RunRequest(idempotency_key="old"))
        assert again == runs.StartedRun(first.run_id, duplicate=True)
        await runs.trigger(ctx, "ns", "g", runs.RunRequest(idempotency_key="live"))
        # The key's time passes (its expiry moved back, as time would move it forward).
        async with storage.transaction() as tx:
            t = schema.trigger_keys
            await tx.conn.execute(t.update().where(t.c.key == "old").values(expires_at=now_ms() - 1))
        renewed = await runs.trigger(ctx, "ns", "g", runs.RunRequest(idempotency_key="old"))
        assert not renewed.duplicate and renewed.run_id != first.run_id
        async with storage.transaction() as tx:
            t = schema.trigger_keys
            await tx.conn.execute(t.update().where(t.c.key == "old").values(expires_at=now_ms() - 1))
        await Scheduler(ctx).tick()
        assert await _keys(storage) == {"live"}
    finally:
        await storage.close()
