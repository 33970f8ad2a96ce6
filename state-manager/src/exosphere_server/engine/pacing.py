"""Long loops on the event loop give way to other requests every few milliseconds.

A 10,000-way fan-out builds 20,000 states in Python inside one transaction. Done in one go it would
hold the event loop for a quarter of a second or more, and every other request (`/health` included)
would wait that long. A `Pacer` measures time rather than counting items, so the pauses stay short
however slow each item is and however loaded the machine.
"""

from __future__ import annotations

import asyncio
import time

TURN_SECONDS = 0.005  # how long a loop may keep the event loop before it lets other requests in


class Pacer:
    """Yield to the event loop once `turn` seconds have passed since the last time.

    Example::

        pacer = Pacer()
        for item in items:
            build(item)
            await pacer.give_way()
    """

    def __init__(self, turn: float = TURN_SECONDS) -> None:
        self._turn = turn
        self._since = time.perf_counter()

    async def give_way(self) -> None:
        """Let other tasks run if this one has had the loop for a turn; otherwise return at once."""
        if time.perf_counter() - self._since >= self._turn:
            await asyncio.sleep(0)
            self._since = time.perf_counter()
