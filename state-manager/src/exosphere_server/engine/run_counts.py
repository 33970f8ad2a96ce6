"""A run's progress as counts: its summary status, and its states counted per (template node, status)
at one version. The change feed (`run_feed.py`), the inspection reads and `GET run` all speak these.

Example::

    counted = await read_run_state_counts(ctx.storage, run_id)
    counted.version, counted.summary.status      # 17, "PENDING"
    [(c.identifier, c.status, c.count) for c in counted.counts]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from exospherehost.statuses import RunStatus

from exosphere_server.engine.errors import NotFound
from exosphere_server.storage.base import Storage, Tx
from exosphere_server.storage.records import RunCounts, RunRecord, UsageTotals


def run_not_found(namespace: str, run_id: str) -> NotFound:
    return NotFound(f"Run {run_id} not found in namespace {namespace}")


async def run_in(tx: Tx, namespace: str, run_id: str) -> RunRecord:
    """The run, read in `tx`; a 404 when it does not exist in `namespace`."""
    run = await tx.get_run(run_id)
    if run is None or run.namespace != namespace:
        raise run_not_found(namespace, run_id)
    return run


@dataclass
class RunSummary:
    run: RunRecord
    counts: RunCounts

    @property
    def status(self) -> RunStatus:
        return self.counts.status

    @property
    def finished(self) -> bool:
        return self.counts.pending == 0 and self.counts.total > 0

    @property
    def finished_at(self) -> int | None:
        """When the run ended: its last state's end, once nothing is pending."""
        return self.counts.last_finished_at if self.finished else None

    def duration_ms(self, now: int) -> int:
        """From the trigger to the run's end, or to `now` while it goes on."""
        return max(0, (self.finished_at or now) - self.run.created_at)


@dataclass(frozen=True)
class StateCount:
    """How many of a run's states of one template node are in one status."""

    identifier: str
    node_name: str
    status: str
    count: int
    last_finished_at: int | None = None


@dataclass
class RunStateCounts:
    """A run and its states counted per (template node, status), nodes in the order they first appeared.

    `version` numbers the run's changes (the sum of its states' revisions): it grows with every
    change, is the same on every replica and survives restarts, so it is the id of change events.
    """

    run: RunRecord
    counts: list[StateCount]
    version: int = 0
    usage: dict[str, UsageTotals] = field(default_factory=dict)  # per template node (identifier)
    _encoded: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def summary(self) -> RunSummary:
        totals = RunCounts()
        for count in self.counts:
            totals.add(count.status, count.count, count.last_finished_at)
        for used in self.usage.values():
            totals.usage.add(used)
        return RunSummary(self.run, totals)

    def encoded(self, kind: str, encode: Callable[[RunStateCounts], str]) -> str:
        """`encode(self)`, computed once per kind: a hundred followers sent this snapshot encode it once."""
        text = self._encoded.get(kind)
        if text is None:
            text = self._encoded[kind] = encode(self)
        return text


async def read_run_state_counts(storage: Storage, run_id: str, run: RunRecord | None = None) -> RunStateCounts | None:
    """The run and its counts now (a primary-key read and one GROUP BY); None when there is no such run.

    A run never changes after its trigger: given `run`, only the counts are read (one statement), and
    a run without states is a run that was deleted (a trigger commits its run with its first state).
    """
    async with storage.reader() as tx:
        if run is None:
            run = await tx.get_run(run_id)
            if run is None:
                return None
        version, rows, usage = await tx.state_counts_by_node(run_id)
    if not rows:
        return None
    return RunStateCounts(run, [StateCount(*row) for row in rows], version, usage)
