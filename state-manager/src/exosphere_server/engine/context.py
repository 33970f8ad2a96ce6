"""What every engine operation needs: storage, the secrets box, wake-ups, the run change feed, and cached
graph shapes."""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel

from exosphere_server.engine.graph_shape import GraphShape, analyse_graph
from exosphere_server.engine.limited_nodes import LimitedNodes
from exosphere_server.engine.live_streams import StreamReaders, StreamWriter
from exosphere_server.engine.run_feed import RunFeed
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.engine.serving import NodePolls
from exosphere_server.engine.wakeups import Wakeups
from exosphere_server.storage.base import Storage
from exosphere_server.storage.records import GraphVersionRecord, RunRecord
from exosphere_server.tracing import Tracing


@dataclass(frozen=True)
class PinnedGraph:
    """A graph version as a run sees it: immutable, so its shape is computed once and cached."""

    namespace: str
    name: str
    version: int
    shape: GraphShape
    retry_policy: RetryPolicyModel
    store_config: StoreConfigModel
    timeout_seconds: float | None = None
    deadline_seconds: float | None = None
    priority: int | None = None  # of runs whose trigger gives none
    budget: dict[str, Any] | None = None  # of runs whose trigger gives none

    def timeout_ms(self, identifier: str) -> int | None:
        """The time-out of one node's attempts: its own `timeout_seconds`, else the graph's, else none."""
        seconds = self.shape.nodes[identifier].timeout_seconds
        if seconds is None:
            seconds = self.timeout_seconds
        return None if seconds is None else max(1, round(seconds * 1000))


class PinnedGraphs:
    """Versions never change once written, so each is parsed and analysed once per process."""

    def __init__(self, capacity: int = 512) -> None:
        self._cache: OrderedDict[tuple[str, str, int], PinnedGraph] = OrderedDict()
        self._capacity = capacity

    def cached(self, namespace: str, name: str, version: int) -> PinnedGraph | None:
        return self._cache.get((namespace, name, version))

    async def get(self, record: GraphVersionRecord) -> PinnedGraph:
        key = (record.namespace, record.name, record.version)
        pinned = self._cache.get(key)
        if pinned is None:
            # In a worker thread: a large graph takes seconds to parse and analyse.
            pinned = await asyncio.to_thread(_pin, record)
            self._cache[key] = pinned
            if len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return pinned


def _pin(record: GraphVersionRecord) -> PinnedGraph:
    store_config = StoreConfigModel.model_validate(record.store_config)
    nodes = [GraphNodeModel.model_validate(n) for n in record.nodes]
    return PinnedGraph(
        record.namespace,
        record.name,
        record.version,
        analyse_graph(nodes, store_config, {}),
        RetryPolicyModel.model_validate(record.retry_policy),
        store_config,
        record.timeout_seconds,
        record.deadline_seconds,
        record.priority,
        record.budget,
    )


class RunCache:
    """Runs never change after trigger: each is read once per process, then served from memory."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._cache: OrderedDict[str, tuple[RunRecord, PinnedGraph]] = OrderedDict()
        self._capacity = capacity

    def get(self, run_id: str) -> tuple[RunRecord, PinnedGraph] | None:
        found = self._cache.get(run_id)
        if found is not None:
            self._cache.move_to_end(run_id)
        return found

    def put(self, run: RunRecord, graph: PinnedGraph) -> None:
        self._cache[run.run_id] = (run, graph)
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)


class RevokedSessionCache:
    """Dashboard session ids known to be revoked: a revocation is never undone, so this can only be stale
    by missing an id (then storage is asked). Bounded, the least recently seen forgotten first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, token_id: str) -> bool:
        return token_id in self._ids

    def add(self, token_id: str) -> None:
        self._ids[token_id] = None
        self._ids.move_to_end(token_id)
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


@dataclass
class EngineContext:
    storage: Storage
    box: SecretBox
    wakeups: Wakeups = field(default_factory=Wakeups)
    default_lease_ms: int = 300_000
    cron_catch_up: str = "latest"
    idempotency_key_ms: int = 24 * 3_600_000
    max_graph_nodes: int = 10_000
    unserved_after_ms: int = 60_000
    pinned: PinnedGraphs = field(default_factory=lambda: PinnedGraphs())
    runs: RunCache = field(default_factory=lambda: RunCache())
    revoked_sessions: RevokedSessionCache = field(default_factory=lambda: RevokedSessionCache())
    tracing: Tracing = field(default_factory=Tracing)  # off unless an OTLP endpoint is configured
    feed: RunFeed = field(init=False)
    polls: NodePolls = field(init=False)
    limited: LimitedNodes = field(default_factory=lambda: LimitedNodes())
    streams: StreamReaders = field(default_factory=StreamReaders)
    stream_writer: StreamWriter = field(init=False)

    def __post_init__(self) -> None:
        self.feed = RunFeed(self.storage)
        self.stream_writer = StreamWriter(self.storage, self.streams)
        # Written often enough that a served node never looks unserved: four times per wait at least.
        self.polls = NodePolls(min(5_000, self.unserved_after_ms // 4))
        # Imported here: child_runs runs transitions, which import this module.
        from exosphere_server.engine.child_runs import settle

        self.storage.add_commit_step(functools.partial(settle, self))

    def stop_waiting(self) -> None:
        """The server is stopping: long-polls answer now and run streams end, so connections drain at once."""
        self.wakeups.close()
        self.feed.close()
        self.streams.close()
