"""Which nodes some graph gives limits or a concurrency, as a replica knows it.

A claim of other nodes is the one-statement plain claim alone; a claim of these nodes also looks for
limited states (`Storage.claim_limited`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from exosphere_server.clock import now_ms
from exosphere_server.storage.base import Storage

REFRESH_MS = 1_000


class LimitedNodes:
    """Read from storage at most every second. Only ever late, never wrong: a replica that has not seen a
    graph's new limits yet hands out none of its limited states (the plain claim skips them) for up to
    a second, and a node whose limits were removed only costs its claims one query more.

    Example::

        limited = await ctx.limited.among(ctx.storage, "demo", ["Summarise", "Fetch"])  # ['Summarise']
    """

    def __init__(self) -> None:
        self._known: set[tuple[str, str]] = set()
        self._read_at: int | None = None

    def learn(self, refs: Iterable[tuple[str, str]]) -> None:
        self._known.update(refs)

    async def among(self, storage: Storage, namespace: str, node_names: Sequence[str]) -> list[str]:
        now = now_ms()
        if self._read_at is None or now - self._read_at >= REFRESH_MS:
            self._read_at = now
            async with storage.reader() as tx:
                self._known |= await tx.limited_nodes()
        return [name for name in node_names if (namespace, name) in self._known]
