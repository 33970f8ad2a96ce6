"""The run feed reads a change that may end its run at once: the end of a chain reaches its followers
without waiting for the pause that spaces the reads of a busy run, and the changes before it still wait."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from exosphere_server.engine import graphs, run_feed, runs, transitions
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.storage.base import ReadyKey
from exosphere_server.storage.records import StateRecord
from exosphere_server.storage.sqlite import SqliteStorage
from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel

from .echo_graph import register_echo

AN_HOUR = 3600.0


class FeedListener:
    """Tells the engine's run feed what storage announces, as the app's listener does."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def runs_changed(self, run_ids: set[str], pending_change: Mapping[str, int]) -> None:
        self.ctx.feed.changed(run_ids, pending_change)

    def states_ready(self, ready: Mapping[ReadyKey, int | None]) -> None: ...
    def wake_everyone(self) -> None: ...
    def schedule_changed(self) -> None: ...
    def every_run_changed(self) -> None: ...
    def streams_changed(self, state_ids: set[str] | None) -> None: ...
    def lease_granted(self, deadline_ms: int) -> None: ...
    def runs_and_attempts(self, started: list[object], ended: list[object]) -> None: ...


@pytest.fixture
async def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EngineContext]:
    # Every pause between two reads of a changing run lasts an hour: a change read sooner was read at once.
    monkeypatch.setattr(run_feed, "MIN_PAUSE_S", AN_HOUR)
    monkeypatch.setattr(run_feed, "MAX_PAUSE_S", AN_HOUR)
    storage = SqliteStorage(tmp_path / "exosphere.db")
    await storage.start()
    context = EngineContext(storage=storage, box=SecretBox(b"k" * 32))
    storage.subscribe(FeedListener(context))
    await register_echo(context)
    await graphs.upsert_graph(
        context,
        "ns",
        "chain",
        nodes=[
            GraphNodeModel(
                node_name="Echo", namespace="ns", identifier="first", inputs={"x": "1"}, next_nodes=["last"]
            ),
            GraphNodeModel(node_name="Echo", namespace="ns", identifier="last", inputs={"x": "${{ first.outputs.x }}"}),
        ],
        secrets={},
        retry_policy=RetryPolicyModel(max_retries=0, backoff_factor=1),
        store_config=StoreConfigModel(),
        triggers=[],
    )
    yield context
    context.stop_waiting()
    await storage.close()


async def claim_one(ctx: EngineContext) -> StateRecord:
    [state] = await transitions.claim(ctx, "ns", ["Echo"], 1)
    return state


async def test_the_change_that_ends_a_run_is_read_at_once_and_the_others_wait(ctx: EngineContext) -> None:
    run_id = (await runs.trigger(ctx, "ns", "chain", runs.RunRequest())).run_id
    async with ctx.feed.follow("ns", run_id) as follower:
        started = follower.latest
        assert not started.summary.finished and started.summary.counts.pending == 1
        first = await claim_one(ctx)  # a change that ends nothing: read after the pause, an hour from now
        await transitions.executed(ctx, "ns", first.id, [{"x": "2"}], first.lease_id)  # one ends, one starts
        last = await claim_one(ctx)
        assert follower.latest.version == started.version  # none of these was read yet
        await transitions.executed(ctx, "ns", last.id, [{"x": "3"}], last.lease_id)  # nothing pending now
        ended = await follower.next(after=started.version, timeout=60)
    assert ended is not None and ended.summary.finished and ended.summary.status == "SUCCESS"
