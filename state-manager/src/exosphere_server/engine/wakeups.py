"""In-process wake-ups for long-polling claimers: a claimer waits on the (namespace, node) keys it serves.

When this replica makes states ready it knows how many, and wakes only as many waiting claimers as
those states can feed (each claimer says how many it takes at once), so that one ready state does
not send fifty claimers to the database for one row. A claimer woken for work that does not claim
(it left first) hands the wake-up on (`pass_on`). Ready work announced by another replica does not
say how many states it is, nor do delayed states coming due: those wake every waiting claimer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

ReadyKey = tuple[str, str]


class Waiter:
    def __init__(self, appetite: int = 1) -> None:
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.appetite = appetite  # how many states the claimer takes at once

    @property
    def woken(self) -> bool:
        return self._future.done()

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
        # Per key, in the order they began to wait (a dict as an ordered set): the longest waiting is woken first.
        self._waiters: defaultdict[ReadyKey, dict[Waiter, None]] = defaultdict(dict)
        # Set when the server begins to stop: long-polls answer at once instead of holding the
        # shutdown until their bound (which ended them with a 500 when the grace period ran out).
        self.closing = False

    @contextlib.contextmanager
    def watch(self, keys: Iterable[ReadyKey], appetite: int = 1) -> Iterator[Waiter]:
        """Register before looking for work, so a wake-up between the look and the wait is not lost.

        `appetite`: how many states the claimer takes at once, so `feed` knows how many to wake."""
        waiter = Waiter(appetite)
        keys = list(keys)
        for key in keys:
            self._waiters[key][waiter] = None
        try:
            yield waiter
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.pop(waiter, None)
                    if not waiters:
                        del self._waiters[key]

    def notify(self, keys: Iterable[ReadyKey]) -> None:
        """Wake every claimer waiting on these keys."""
        for key in keys:
            for waiter in list(self._waiters.get(key, ())):
                waiter.wake()

    def feed(self, ready: Mapping[ReadyKey, int | None], *, instead_of: Waiter | None = None) -> None:
        """`ready[key]` states became claimable: wake waiters of the key until their appetites cover them
        (every waiter when the count is None). Waiters already woken are on their way and not counted;
        `instead_of` is never woken (the claimer handing its wake-up on)."""
        for key, count in ready.items():
            if count is None:
                self.notify([key])
                continue
            left = count
            for waiter in list(self._waiters.get(key, ())):
                if left <= 0:
                    break
                if not waiter.woken and waiter is not instead_of:
                    waiter.wake()
                    left -= waiter.appetite

    def pass_on(self, keys: Iterable[ReadyKey], instead_of: Waiter) -> None:
        """A claimer woken for work leaves without looking for it: wake one other waiter per key in its place."""
        self.feed({key: 1 for key in keys}, instead_of=instead_of)

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
