"""Storage announces every run it moves, from its own writes: each transition of the engine reaches the
listener with its run, and raises the run's version (the id of its events); a heartbeat does neither."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path

import pytest
from exosphere_server.engine import graphs, runs, transitions
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.storage.base import ReadyKey
from exosphere_server.storage.records import StateRecord
from exosphere_server.storage.sqlite import SqliteStorage
from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel

from .echo_graph import register_echo


class Recorder:
    """A storage listener that keeps the runs each commit announced."""

    def __init__(self) -> None:
        self.runs: set[str] = set()

    def runs_changed(self, run_ids: set[str], pending_change: Mapping[str, int]) -> None:
        self.runs |= run_ids

    def states_ready(self, keys: set[ReadyKey]) -> None: ...
    def wake_everyone(self) -> None: ...
    def schedule_changed(self) -> None: ...
    def every_run_changed(self) -> None: ...
    def lease_granted(self, deadline_ms: int) -> None: ...


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[EngineContext]:
    storage = SqliteStorage(tmp_path / "exosphere.db")
    await storage.start()
    context = EngineContext(storage=storage, box=SecretBox(b"k" * 32))
    await register_echo(context)
    for name, retries in (("retried", 1), ("once", 0)):
        await graphs.upsert_graph(
            context,
            "ns",
            name,
            nodes=[GraphNodeModel(node_name="Echo", namespace="ns", identifier="e", inputs={"x": "1"})],
            secrets={},
            retry_policy=RetryPolicyModel(max_retries=retries, backoff_factor=1),
            store_config=StoreConfigModel(),
            triggers=[],
        )
    yield context
    await storage.close()


async def version(ctx: EngineContext, run_id: str) -> int:
    async with ctx.storage.reader() as tx:
        found, _counts, _usage = await tx.state_counts_by_node(run_id)
    return found


async def claim_one(ctx: EngineContext, lease_ms: int | None = None) -> StateRecord:
    """The one claimable state, once it is due (a retry waits a millisecond; no scheduler wakes us here)."""
    while not (found := await transitions.claim(ctx, "ns", ["Echo"], 1, lease_ms=lease_ms)):
        await asyncio.sleep(0.001)
    [state] = found
    return state


async def test_every_transition_announces_its_run_and_raises_its_version(ctx: EngineContext) -> None:
    recorder = Recorder()
    ctx.storage.subscribe(recorder)

    async def moves(run_id: str, step: Awaitable[object]) -> object:
        before = await version(ctx, run_id)
        recorder.runs.clear()
        result = await step
        assert run_id in recorder.runs
        assert await version(ctx, run_id) > before
        return result

    run_id = (await runs.trigger(ctx, "ns", "retried", runs.RunRequest())).run_id
    assert run_id in recorder.runs and await version(ctx, run_id) == 1
    state = await moves(run_id, claim_one(ctx))
    assert isinstance(state, StateRecord) and state.lease_id is not None

    recorder.runs.clear()
    held = await version(ctx, run_id)
    await transitions.heartbeat(ctx, "ns", state.id, state.lease_id, 60_000)
    assert recorder.runs == set() and await version(ctx, run_id) == held  # nothing moved

    await moves(run_id, transitions.release(ctx, "ns", state.id, state.lease_id))
    state = await moves(run_id, claim_one(ctx))
    assert isinstance(state, StateRecord)
    await moves(run_id, transitions.requeue_after(ctx, "ns", state.id, 0, state.lease_id))
    state = await moves(run_id, claim_one(ctx))
    assert isinstance(state, StateRecord)
    await moves(run_id, transitions.errored(ctx, "ns", state.id, "boom", state.lease_id))  # a retry
    retry = await moves(run_id, claim_one(ctx))
    assert isinstance(retry, StateRecord)
    await moves(run_id, transitions.prune(ctx, "ns", retry.id, {}, retry.lease_id))

    once = (await runs.trigger(ctx, "ns", "once", runs.RunRequest())).run_id
    state = await moves(once, claim_one(ctx, lease_ms=1))
    assert isinstance(state, StateRecord)
    before = await version(ctx, once)
    recorder.runs.clear()
    while await transitions.expire_leases(ctx) == 0:  # due within a millisecond
        await asyncio.sleep(0.001)
    assert once in recorder.runs and await version(ctx, once) > before  # ERRORED for good: no retries left
    retried = await moves(once, transitions.manual_retry(ctx, "ns", state.id, "fan-out-1"))
    assert isinstance(retried, StateRecord)
    state = await moves(once, claim_one(ctx))
    assert isinstance(state, StateRecord)
    await moves(once, transitions.executed(ctx, "ns", state.id, [{"x": "done"}], state.lease_id))
    summary = await runs.run_summary(ctx, "ns", once)
    assert summary.finished and summary.status == "SUCCESS"
