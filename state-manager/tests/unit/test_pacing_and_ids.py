"""Long loops give the event loop back between turns; ids drawn in bulk keep their shapes (issue 15)."""

from __future__ import annotations

import asyncio
import re
import uuid

from exosphere_server.engine.pacing import Pacer
from exosphere_server.random_ids import random_hex, random_uuid
from exosphere_server.storage.base import new_id


def test_a_paced_loop_lets_another_task_run_between_its_turns() -> None:
    async def scenario() -> list[str]:
        order: list[str] = []

        async def other() -> None:
            order.append("other")

        async def long_loop() -> None:
            pacer = Pacer(turn=0)  # every call is past its turn
            for i in range(3):
                order.append(f"item {i}")
                await pacer.give_way()

        await asyncio.gather(long_loop(), other())
        return order

    assert asyncio.run(scenario())[:3] == ["item 0", "other", "item 1"]


def test_a_loop_within_its_turn_keeps_the_loop() -> None:
    async def scenario() -> list[str]:
        order: list[str] = []

        async def other() -> None:
            order.append("other")

        async def short_loop() -> None:
            pacer = Pacer(turn=3600)
            for i in range(3):
                order.append(f"item {i}")
                await pacer.give_way()

        await asyncio.gather(short_loop(), other())
        return order

    assert asyncio.run(scenario()) == ["item 0", "item 1", "item 2", "other"]


def test_ids_drawn_in_bulk_keep_their_shapes_and_do_not_repeat() -> None:
    uuids = [random_uuid() for _ in range(5000)]
    assert all(uuid.UUID(u).version == 4 and str(uuid.UUID(u)) == u for u in uuids)
    hexes = [random_hex(12) for _ in range(5000)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", h) for h in hexes)
    ids = [new_id() for _ in range(5000)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in ids)
    assert len(set(uuids)) == len(set(hexes)) == len(set(ids)) == 5000
    assert len(random_hex(10_000)) == 20_000  # more than the pool holds at once
