"""Budgets: a run whose attempts report more usage than its budget is cancelled (`budget exceeded`).

The check runs inside every transaction that ends an attempt of a run with a budget, after that
attempt's usage is counted, so the run stops at the first result that takes it over. Its waiting
states are cancelled in that same transaction, children just made by it included; states executing
at that moment finish, their results (and usage) are applied, and the states they would make are
cancelled by the transaction that makes them. The cost: one read of the run's usage rows per
completion, for runs with a budget only.

Example::

    await enforce_budgets(tx, ctx, [run])   # inside a completion's transaction
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from exosphere_server.engine.cancellation import BUDGET_EXCEEDED, cancel_waiting_in
from exosphere_server.storage.base import Tx
from exosphere_server.storage.records import RunRecord, StateRecord, UsageTotals


def over_budget(budget: dict[str, Any], used: UsageTotals) -> bool:
    """Whether `used` is more than `budget` allows: more tokens (input plus output) or more dollars."""
    tokens, cost = budget.get("tokens"), budget.get("cost_usd")
    return (tokens is not None and used.tokens > tokens) or (cost is not None and used.cost_usd > cost)


async def enforce_budgets(tx: Tx, runs: Iterable[RunRecord]) -> list[StateRecord]:
    """Cancel the waiting states of each of `runs` that is over its budget; the states cancelled."""
    cancelled: list[StateRecord] = []
    for run in {r.run_id: r for r in runs if r.budget}.values():
        assert run.budget is not None
        if over_budget(run.budget, await tx.run_usage(run.run_id)):
            cancelled += await cancel_waiting_in(tx, run.run_id, BUDGET_EXCEEDED)
    return cancelled
