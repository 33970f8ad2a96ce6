"""Which nodes some runtime serves: a node that no runtime has asked work for (a claim, a heartbeat,
a registration) for `unserved_after_ms` leaves its ready states waiting, and the run API, the CLI, the
dashboard and `/metrics` say so. The states themselves stay waiting: a runtime may still come.

Each replica writes when it last heard of a node at most every few seconds per node (`NodePolls`),
so a busy runtime costs no write per claim.

Example::

    await note_served(ctx, "demo", ["Greet"])
    await unserved_warnings(ctx, run_id)  # ['no runtime serves node Shout (namespace demo)']
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from exosphere_server.clock import now_ms

if TYPE_CHECKING:  # the context holds a NodePolls: a runtime import would be circular
    from exosphere_server.engine.context import EngineContext

ReadyKey = tuple[str, str]


class NodePolls:
    """When this replica last recorded each (namespace, node): a new write only once `every_ms` passed."""

    def __init__(self, every_ms: int) -> None:
        self.every_ms = every_ms
        self._written: dict[ReadyKey, int] = {}

    def due(self, keys: Iterable[ReadyKey], now: int) -> list[ReadyKey]:
        due = [key for key in dict.fromkeys(keys) if now - self._written.get(key, -self.every_ms) >= self.every_ms]
        for key in due:
            self._written[key] = now
        return due


async def note_served(ctx: EngineContext, namespace: str, node_names: Iterable[str]) -> None:
    """A runtime asked for work of these nodes (or heartbeated one of their states) just now."""
    now = now_ms()
    due = ctx.polls.due(((namespace, name) for name in node_names), now)
    if due:
        # Not durable: losing it in a database crash only delays a warning's disappearance.
        async with ctx.storage.transaction(durable=False) as tx:
            await tx.note_node_polls(due, now)


def unserved_message(namespace: str, node_name: str) -> str:
    return f"no runtime serves node {node_name} (namespace {namespace})"


async def unserved_nodes(ctx: EngineContext, run_id: str | None = None) -> dict[ReadyKey, int]:
    """(namespace, node) -> states ready for `unserved_after_ms` or longer that no runtime asked for."""
    async with ctx.storage.reader() as tx:
        return await tx.unserved_waiting(now_ms() - ctx.unserved_after_ms, run_id)


async def unserved_warnings(ctx: EngineContext, run_id: str) -> list[str]:
    """One warning per node of the run that waits for a runtime nobody runs."""
    return [unserved_message(ns, node) for ns, node in sorted(await unserved_nodes(ctx, run_id))]
