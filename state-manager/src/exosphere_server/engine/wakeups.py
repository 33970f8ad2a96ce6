"""In-process wake-ups for long-polling claimers: a claimer waits on the (namespace, node) keys it serves."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Iterator

ReadyKey = tuple[str, str]


class Waiter:
    def __init__(self) -> None:
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self, timeout: float) -> bool:
        """True when woken, False when the timeout passed first."""
        try:
            await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except TimeoutError:
            return False
        return True


class Wakeups:
    def __init__(self) -> None:
        self._waiters: defaultdict[ReadyKey, set[Waiter]] = defaultdict(set)
        # Set when the server begins to stop: long-polls answer at once instead of holding the
        # shutdown until their bound (which ended them with a 500 when the grace period ran out).
        self.closing = False

    @contextlib.contextmanager
    def watch(self, keys: Iterable[ReadyKey]) -> Iterator[Waiter]:
        """Register before looking for work, so a wake-up between the look and the wait is not lost."""
        waiter = Waiter()
        keys = list(keys)
        for key in keys:
            self._waiters[key].add(waiter)
        try:
            yield waiter
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[key]

    def notify(self, keys: Iterable[ReadyKey]) -> None:
        for key in keys:
            for waiter in list(self._waiters.get(key, ())):
                waiter.wake()

    def close(self) -> None:
        """The server is stopping: wake every waiter now and let none wait again."""
        self.closing = True
        self.notify_all()

    def notify_all(self) -> None:
        for waiters in list(self._waiters.values()):
            for waiter in list(waiters):
                waiter.wake()

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())
