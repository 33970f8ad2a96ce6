"""One change feed per replica: every follower of a run shares one producer that reads the run once per change.

Storage announces "run R changed" after each commit that moved one of R's states, in-process, and
on PostgreSQL from every other replica too (NOTIFY). `RunFeed.changed` marks R's producer dirty; the
producer reads R's counts per node and status (`read_run_state_counts`), at once after a quiet spell
and then, while changes keep coming, after a pause that grows with what a read costs: `READ_SHARE`
times the last read's duration, times the followers it feeds, between `MIN_PAUSE_S` and
`MAX_PAUSE_S`. A cheap read of a run followed once is repeated every few milliseconds, so the end of
a busy run reaches `wait_for_run` within milliseconds, not a fixed tenth of a second later; a costly
read, or a run followed by a hundred dashboards, is repeated at most ten times a second, so a burst
of a thousand completions still costs a handful of reads. A change that may have ended the run is
read at once, without the pause: a commit here tells how many of the run's states stopped being
pending, and once as many have stopped since the last read began as that read found pending, the
run may be over (a chain's last hop; a fan-out's last leaf), so its end reaches `wait_for_run`
within a read, not a pause, later. The count is only a hint: a change another replica announced
says nothing about it, and a miscount costs one early read or waits for the pause, never loses a
change. Each snapshot it reads that is newer than the last one goes to every follower of R on this
replica. Followers run no query: the SSE streams of `/v0` and of the dashboard and the `wait_ms`
long-polls of `GET run` all follow the same producer, and a hundred open followers of one busy run
cost about what one does.

A producer lives while the run has followers on this replica. Snapshots carry `version`, which
grows with every change of the run and is the same on every replica (see `RunStateCounts`).

Example::

    async with ctx.feed.follow("prod", run_id) as follower:   # NotFound for an unknown run
        snapshot = follower.latest
        while not snapshot.summary.finished:
            newer = await follower.next(after=snapshot.version, timeout=15)
            if newer is None:          # nothing within 15 s, or the server is stopping
                break
            snapshot = newer
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping

import structlog

from exosphere_server.engine.run_counts import RunStateCounts, read_run_state_counts, run_not_found
from exosphere_server.storage.base import Storage

log = structlog.get_logger("exosphere.feed")
MIN_PAUSE_S = 0.002  # the shortest pause between two reads of one run while it keeps changing
MAX_PAUSE_S = 0.1  # the longest: a busy run's followers are never more than this behind
# Between two reads of a busy run the producer waits this many times what the last read took, per
# follower, so that reading and telling followers stay a small share of the server's time.
READ_SHARE = 20
RETRY_READ_S = 1.0  # after a failed read (the database is away), look again this long after


def pause_after(read_seconds: float, followers: int) -> float:
    """How long a busy run's producer waits after a read that took `read_seconds` before the next."""
    return min(MAX_PAUSE_S, max(MIN_PAUSE_S, READ_SHARE * read_seconds * max(1, followers)))


class _Producer:
    """Reads one run for all of its followers on this replica."""

    def __init__(self, feed: RunFeed, run_id: str) -> None:
        self.feed = feed
        self.run_id = run_id
        self.followers = 0
        self.latest: RunStateCounts | None = None
        self.gone = False  # the run was deleted (retention) while followed
        self.dirty = asyncio.Event()
        # States of the run that stopped being pending (net) since the last read began, as this
        # replica's commits told; `maybe_ended` is set once they reach what that read found pending.
        self.left_pending = 0
        self.pending_at_read = 0
        self.maybe_ended = asyncio.Event()
        # Set, then replaced by a fresh one, each time there is something new for followers to look at.
        self.news = asyncio.Event()
        self.first_read: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._produce(), name=f"run-feed-{run_id}")

    def tell_followers(self) -> None:
        news, self.news = self.news, asyncio.Event()
        news.set()

    def changed(self, pending_change: int) -> None:
        """The run changed; `pending_change` more of its states are pending (negative: fewer)."""
        self.left_pending -= pending_change
        if self.pending_at_read > 0 and self.left_pending >= self.pending_at_read:
            self.maybe_ended.set()
        self.dirty.set()

    def _reading(self) -> None:
        """A read begins: changes from now on are counted toward the next one."""
        self.dirty.clear()
        self.maybe_ended.clear()
        self.left_pending = 0

    def _read(self, snapshot: RunStateCounts) -> None:
        self.pending_at_read = snapshot.summary.counts.pending

    async def _produce(self) -> None:
        try:
            self._reading()
            self.latest = await read_run_state_counts(self.feed.storage, self.run_id)
        except Exception as exc:
            self.first_read.set_exception(exc)
            return
        if self.latest is None:
            self.gone = True
            self.first_read.set_result(None)
            return
        self._read(self.latest)
        self.first_read.set_result(None)
        loop = asyncio.get_running_loop()
        last_read = loop.time()
        read_cost = 0.0
        while True:
            await self.dirty.wait()
            pause = last_read + pause_after(read_cost, self.followers) - loop.time()
            if pause > 0:
                # Changes meanwhile are read together, after the pause, or at once when one may end the run.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.maybe_ended.wait(), pause)
            self._reading()
            last_read = loop.time()
            try:
                snapshot = await read_run_state_counts(self.feed.storage, self.run_id, self.latest.run)
                read_cost = loop.time() - last_read
            except Exception as exc:  # the database is away: followers wait, the producer tries again
                log.warning("run_feed_read_failed", run_id=self.run_id, error_type=type(exc).__name__)
                await asyncio.sleep(RETRY_READ_S)
                self.dirty.set()
                continue
            if snapshot is None:
                self.gone = True
                self.tell_followers()
                return
            self._read(snapshot)
            if snapshot.version > self.latest.version:
                self.latest = snapshot
                self.tell_followers()


class RunFollower:
    """One follower's view of a run's feed: the latest snapshot, and a wait for a newer one."""

    def __init__(self, feed: RunFeed, producer: _Producer) -> None:
        self._feed = feed
        self._producer = producer

    @property
    def latest(self) -> RunStateCounts:
        """The newest snapshot this replica has read (at most `MAX_PAUSE_S` behind a change it heard)."""
        assert self._producer.latest is not None
        return self._producer.latest

    @property
    def gone(self) -> bool:
        """The run was deleted while followed."""
        return self._producer.gone

    @property
    def closing(self) -> bool:
        """The server is stopping: a stream should end now (its client reconnects elsewhere or later)."""
        return self._feed.closing

    async def next(self, after: int, timeout: float) -> RunStateCounts | None:
        """The latest snapshot as soon as its version is above `after`; None when `timeout` seconds pass
        first, the run is gone, or the server is stopping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self._producer.gone or self._feed.closing):
            if self.latest.version > after:
                return self.latest
            news = self._producer.news
            try:
                await asyncio.wait_for(news.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return None
        return None


class RunFeed:
    """The producers of this replica, by run id. Storage's commit events reach it through `changed`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.closing = False
        self._producers: dict[str, _Producer] = {}

    def changed(self, run_ids: Iterable[str], pending_change: Mapping[str, int]) -> None:
        """These runs changed (a commit here, or a NOTIFY from another replica): their producers read again.

        `pending_change` says, per run, how many more of its states are pending after the change
        (negative: fewer); a run it leaves out is counted as unchanged (another replica's NOTIFY says nothing).
        """
        for run_id in run_ids:
            producer = self._producers.get(run_id)
            if producer is not None:
                producer.changed(pending_change.get(run_id, 0))

    def every_run_changed(self) -> None:
        """Too many runs changed to name them (or notifications were lost): every producer reads again."""
        for producer in self._producers.values():
            producer.dirty.set()

    def close(self) -> None:
        """The server is stopping: every follower's wait ends now, and no wait starts again."""
        self.closing = True
        for producer in self._producers.values():
            producer.tell_followers()

    def follower_count(self) -> int:
        """How many followers (streams, long-polls) this replica serves now, over all runs."""
        return sum(producer.followers for producer in self._producers.values())

    @contextlib.asynccontextmanager
    async def follow(self, namespace: str, run_id: str) -> AsyncIterator[RunFollower]:
        """Follow a run of `namespace`; raises `NotFound` (before yielding) when there is no such run there."""
        producer = self._producers.get(run_id)
        failed = producer is not None and producer.task.done() and producer.latest is None
        if producer is None or producer.gone or failed:
            producer = self._producers[run_id] = _Producer(self, run_id)
        producer.followers += 1
        try:
            await asyncio.shield(producer.first_read)
            if producer.latest is None or producer.latest.run.namespace != namespace:
                raise run_not_found(namespace, run_id)
            yield RunFollower(self, producer)
        finally:
            producer.followers -= 1
            if producer.followers == 0:
                producer.task.cancel()
                if self._producers.get(run_id) is producer:
                    del self._producers[run_id]
