"""Signals a node raises from ``execute`` to steer its state instead of returning outputs.

Example::

    from datetime import timedelta
    from exospherehost import BaseNode, PruneSignal, ReQueueAfterSignal, WaitForSignal

    class Poll(BaseNode):
        async def execute(self):
            if not ready():
                raise ReQueueAfterSignal(timedelta(seconds=30))  # run again in 30 s
            if nothing_to_do():
                raise PruneSignal({"reason": "empty"})  # end this branch here
            if self.signal is None:
                raise WaitForSignal("approval", timeout_seconds=3600)  # wait for a person
            ...
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from .contract import SIGNAL_NAME_PATTERN
from .models import LIMIT_NAME_PATTERN, MAX_TIMEOUT_SECONDS


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


class WaitForSignal(Exception):
    """Wait, without holding the runtime, for the signal ``name`` sent to this run; then run again.

    The state becomes ``WAITING``. When the signal is sent (``StateManager.send_signal``, ``exosphere
    signal send``, the dashboard), the node runs again with its payload in ``self.signal``; a signal sent
    before the wait started is delivered at once. After ``timeout_seconds`` without it, the attempt fails
    with ``Timed out waiting for signal <name>`` and the graph's retry policy applies.

    Example::

        async def execute(self):
            if self.signal is None:
                raise WaitForSignal("approval", timeout_seconds=24 * 3600)
            return self.Outputs(approved=self.signal["approved"])
    """

    def __init__(self, name: str, timeout_seconds: float | None = None) -> None:
        if not isinstance(name, str) or re.fullmatch(SIGNAL_NAME_PATTERN, name) is None:
            raise ValueError(
                f"Signal name {name!r} must be 1 to 128 letters, digits or '_ . : -', starting with a letter or digit"
            )
        if timeout_seconds is not None and (
            isinstance(timeout_seconds, bool)
            or not isinstance(timeout_seconds, int | float)
            or not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS
        ):
            raise ValueError(f"timeout_seconds must be a positive number of seconds or None, got {timeout_seconds!r}")
        self.name = name
        self.timeout_seconds = None if timeout_seconds is None else float(timeout_seconds)
        super().__init__(f"Waiting for signal {name}")


class RateLimitedSignal(Exception):
    """The provider behind limit ``limit`` answered 429: run this state again after
    ``retry_after_seconds`` without using a retry, and hand out nothing of that limit (of its bucket
    ``key``, or all of it without one) to any runtime until then.

    ``exospherehost.retry_after_seconds(response)`` reads the delay from the provider's answer.

    Example::

        answer = await client.post(url, json=body)
        if answer.status_code == 429:
            raise RateLimitedSignal("openai", retry_after_seconds=retry_after_seconds(answer) or 1.0)
    """

    def __init__(self, limit: str, retry_after_seconds: float, key: str | None = None) -> None:
        if not isinstance(limit, str) or re.fullmatch(LIMIT_NAME_PATTERN, limit) is None:
            raise ValueError(
                f"Limit name {limit!r} must be 1 to 128 letters, digits or '_ . : -', starting with a letter or digit"
            )
        if (
            isinstance(retry_after_seconds, bool)
            or not isinstance(retry_after_seconds, int | float)
            or not 0 <= retry_after_seconds <= MAX_TIMEOUT_SECONDS
        ):
            raise ValueError(f"retry_after_seconds must be a number of seconds >= 0, got {retry_after_seconds!r}")
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a string or None, got {type(key).__name__}")
        self.limit = limit
        self.retry_after_seconds = float(retry_after_seconds)
        self.key = key
        super().__init__(f"Rate limited by {limit}{f' ({key})' if key else ''}: retry after {retry_after_seconds} s")


__all__ = ["PruneSignal", "RateLimitedSignal", "ReQueueAfterSignal", "WaitForSignal"]
