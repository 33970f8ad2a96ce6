"""Ready states wake as many waiting claimers as they can feed, not every claimer (issue 15)."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

from exosphere_server.engine.wakeups import Waiter, Wakeups

KEY = ("ns", "Node")


def _waiting(wakeups: Wakeups, stack: ExitStack, appetites: list[int]) -> list[Waiter]:
    return [stack.enter_context(wakeups.watch([KEY], appetite)) for appetite in appetites]


def test_one_ready_state_wakes_one_claimer_of_fifty() -> None:
    async def scenario() -> None:
        wakeups = Wakeups()
        with ExitStack() as stack:
            waiters = _waiting(wakeups, stack, [1] * 50)
            wakeups.feed({KEY: 1})
            assert sum(w.woken for w in waiters) == 1
            wakeups.feed({KEY: 3})  # the woken one is on its way: three others more
            assert sum(w.woken for w in waiters) == 4

    asyncio.run(scenario())


def test_claimers_are_woken_until_their_batches_cover_the_ready_states() -> None:
    async def scenario() -> None:
        wakeups = Wakeups()
        with ExitStack() as stack:
            waiters = _waiting(wakeups, stack, [4, 4, 4, 4])
            wakeups.feed({KEY: 5})
            assert sum(w.woken for w in waiters) == 2

    asyncio.run(scenario())


def test_an_unknown_count_wakes_everyone_and_a_leaving_claimer_hands_its_wake_up_on() -> None:
    async def scenario() -> None:
        wakeups = Wakeups()
        with ExitStack() as stack:
            first, second, third = _waiting(wakeups, stack, [1, 1, 1])
            wakeups.feed({KEY: 1})
            assert [first.woken, second.woken, third.woken] == [True, False, False]
            # The woken claimer's next round registers anew, then leaves without claiming.
            with wakeups.watch([KEY], 1) as again:
                wakeups.pass_on([KEY], instead_of=again)
                assert not again.woken
            assert second.woken and not third.woken
        with ExitStack() as stack:
            waiters = _waiting(wakeups, stack, [1, 1, 1])
            wakeups.feed({KEY: None})  # another replica's commit: how many is not known
            assert all(w.woken for w in waiters)

    asyncio.run(scenario())
