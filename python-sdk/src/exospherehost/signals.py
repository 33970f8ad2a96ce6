"""Signals a node raises from ``execute`` to steer its state instead of returning outputs.

Example::

    from datetime import timedelta
    from exospherehost import BaseNode, PruneSignal, ReQueueAfterSignal

    class Poll(BaseNode):
        async def execute(self):
            if not ready():
                raise ReQueueAfterSignal(timedelta(seconds=30))  # run again in 30 s
            if nothing_to_do():
                raise PruneSignal({"reason": "empty"})  # end this branch here
            ...
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any


class PruneSignal(Exception):
    """End this branch of the run: the state becomes ``PRUNED`` and no next nodes are created.

    ``data`` is stored on the state for inspection.

    Example::

        raise PruneSignal({"reason": "duplicate"})
    """

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data) if data else {}
        super().__init__(f"Prune signal received with data: {self.data}")


class ReQueueAfterSignal(Exception):
    """Put this state back in the queue and run it again after ``delay`` (same inputs, no retry used).

    Example::

        raise ReQueueAfterSignal(timedelta(minutes=5))
    """

    def __init__(self, delay: timedelta) -> None:
        if not isinstance(delay, timedelta):
            raise TypeError(f"delay must be a datetime.timedelta, got {type(delay).__name__}")
        if delay <= timedelta(0):
            raise ValueError("delay must be greater than 0")
        self.delay = delay
        super().__init__(f"ReQueueAfter signal received with delay: {delay}")

    @property
    def delay_ms(self) -> int:
        """The delay in whole milliseconds, rounded up so that a positive delay is never sent as 0."""
        micros = self.delay // timedelta(microseconds=1)
        return max(1, (micros + 999) // 1000)


__all__ = ["PruneSignal", "ReQueueAfterSignal"]
