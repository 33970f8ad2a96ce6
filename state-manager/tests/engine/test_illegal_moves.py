"""Storage refuses, on a real SQLite file, every status write that `exospherehost.statuses` does not allow:
an engine change that makes an illegal move fails its tests instead of corrupting runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from exosphere_server.engine import runs, transitions
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.storage.base import new_id
from exosphere_server.storage.records import StateRecord
from exosphere_server.storage.sqlite import SqliteStorage
from exospherehost.statuses import IllegalMoveError, StateStatus

from .echo_graph import add_echo_graph


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[EngineContext]:
    storage = SqliteStorage(tmp_path / "exosphere.db")
    await storage.start()
    context = EngineContext(storage=storage, box=SecretBox(b"k" * 32))
    await add_echo_graph(context)
    try:
        yield context
    finally:
        await storage.close()


async def created_state(ctx: EngineContext) -> StateRecord:
    run_id = (await runs.trigger(ctx, "ns", "g", runs.RunRequest())).run_id
    async with ctx.storage.reader() as tx:
        [state] = await tx.states_of_run(run_id)
    return state


async def stored_status(ctx: EngineContext, state_id: str) -> str:
    async with ctx.storage.reader() as tx:
        state = await tx.get_state(state_id)
    assert state is not None
    return state.status


async def test_an_illegal_move_is_refused_and_writes_nothing(ctx: EngineContext) -> None:
    state = await created_state(ctx)
    with pytest.raises(IllegalMoveError, match="from CREATED to SUCCESS"):
        async with ctx.storage.transaction() as tx:
            await tx.move_states([state], StateStatus.SUCCESS)
    assert state.status == StateStatus.CREATED
    assert await stored_status(ctx, state.id) == StateStatus.CREATED


async def test_a_status_cannot_be_written_around_the_check(ctx: EngineContext) -> None:
    state = await created_state(ctx)
    async with ctx.storage.transaction() as tx:
        with pytest.raises(TypeError, match="move_states"):
            await tx.update_states([state], status=StateStatus.QUEUED)
        with pytest.raises(IllegalMoveError, match="from CREATED to SUCCESS"):
            await tx.finish_states([(state.status, replace(state, status=StateStatus.SUCCESS, finished_at=1))])
        with pytest.raises(IllegalMoveError, match="cannot be created QUEUED"):
            await tx.insert_states([replace(state, id=new_id(), fanout_id=new_id(), status=StateStatus.QUEUED)])
    assert await stored_status(ctx, state.id) == StateStatus.CREATED


async def test_the_engine_moves_a_state_only_along_allowed_moves(ctx: EngineContext) -> None:
    """The legal path through the same checks: claim, release, claim, result."""
    state = await created_state(ctx)
    [claimed] = await transitions.claim(ctx, "ns", ["Echo"], 1)
    await transitions.release(ctx, "ns", claimed.id, claimed.lease_id or "")
    assert await stored_status(ctx, state.id) == StateStatus.CREATED
    [claimed] = await transitions.claim(ctx, "ns", ["Echo"], 1)
    await transitions.executed(ctx, "ns", claimed.id, [{"x": "1"}], claimed.lease_id)
    assert await stored_status(ctx, state.id) == StateStatus.SUCCESS
