"""Live streams out of running nodes: chunks of text an attempt streams while it runs, stored and followed.

A node calls `stream(text)`; its runtime sends the chunks of the attempt in a few long requests,
numbered from 0 per attempt. The attempt is the state's claim count when the upload starts (a state
claimed again, after `ReQueueAfter` or a signal wait, starts a new stream; a retry is a new state with
its own streams), so earlier attempts' streams stay readable.

Writes are grouped: every upload on this replica hands its chunks to one `StreamWriter`, which writes
all that arrived while its previous transaction ran in the next one. Commits per second stay at most
one per commit's duration however many nodes stream, and a chunk waits for at most two commits.

Readers are woken, never polling. The writer hands the chunks it committed to this replica's readers
of them, which send them without a read; other replicas hear of them by PostgreSQL NOTIFY and read
them. Each commit's changed runs (the run change feed) is how a reader learns that its attempt
ended. A reader ends once the attempt has ended and every chunk is sent: the runtime sends the last
chunks before the attempt's result, so they are all stored by the time the state leaves QUEUED.

Example::

    attempt, events = await open_stream(ctx.storage, ctx.streams, "prod", state_id, None, 0)
    async for event in events:
        ...  # ChunksRead(...) batches (and KeepAlive when quiet), then one StreamEnded
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from dataclasses import dataclass

from exospherehost.statuses import StateStatus
from prometheus_client import Counter

from exosphere_server.clock import now_ms
from exosphere_server.engine.errors import BadRequest, LeaseLost, NotFound
from exosphere_server.engine.storable import text_problem
from exosphere_server.storage.base import Storage
from exosphere_server.storage.records import StateRecord, StreamChunkRecord

READ_BATCH = 500  # chunks per read while catching up
MAX_HANDED = 10_000  # chunks kept in memory for one reader; past that it reads from storage
KEEP_ALIVE_S = 15.0  # how long a reader waits without news before its stream sends a keep-alive
CHUNKS_WRITTEN = Counter("exosphere_stream_chunks_total", "Live stream chunks stored by this replica")
STREAM_WRITES = Counter(
    "exosphere_stream_writes_total", "Transactions that stored live stream chunks (each holds every chunk then waiting)"
)


class StreamWriter:
    """Writes the chunks of every upload on this replica, grouped into as few transactions as possible."""

    def __init__(self, storage: Storage, readers: StreamReaders) -> None:
        self.storage = storage
        self.readers = readers
        self._pending: list[tuple[list[StreamChunkRecord], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, chunks: list[StreamChunkRecord]) -> None:
        """Store `chunks`; returns once they are committed (raises what the transaction raised)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((chunks, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_pending(), name="stream-writer")
        await done

    async def _write_pending(self) -> None:
        await asyncio.sleep(0)  # chunks that arrive in the same turn of the event loop share the transaction
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self.storage.transaction() as tx:
                    await tx.append_stream_chunks([chunk for chunks, _ in batch for chunk in chunks])
            except Exception as exc:  # each upload answers with the error; its runtime sends again
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                written = [chunk for chunks, _ in batch for chunk in chunks]
                STREAM_WRITES.inc()
                CHUNKS_WRITTEN.inc(len(written))
                self.readers.deliver(written)
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


class StreamReaders:
    """Readers of live streams on this replica, woken by the state (new chunks) or the run (the state moved)."""

    def __init__(self) -> None:
        self._by_state: dict[str, set[_Reader]] = {}
        self._by_run: dict[str, set[_Reader]] = {}
        self.closing = False

    def deliver(self, chunks: Sequence[StreamChunkRecord]) -> None:
        """Chunks this replica has just committed: handed to its readers of them, which then need no read."""
        for chunk in chunks:
            for reader in self._by_state.get(chunk.state_id, ()):
                reader.hand(chunk)

    def streams_changed(self, state_ids: Iterable[str] | None) -> None:
        """New chunks for these states (None: for any state, as after lost notifications). From another
        replica's NOTIFY, their readers read them; from a commit here, the writer hands them over too."""
        if state_ids is None:
            self._wake(reader for readers in self._by_state.values() for reader in readers)
        else:
            self._wake(reader for state_id in state_ids for reader in self._by_state.get(state_id, ()))

    def runs_changed(self, run_ids: Iterable[str] | None) -> None:
        """States of these runs moved (None: of any run): readers check whether their attempt ended."""
        if run_ids is None:
            self._wake(reader for readers in self._by_run.values() for reader in readers)
        else:
            self._wake(reader for run_id in run_ids for reader in self._by_run.get(run_id, ()))

    def close(self) -> None:
        """The server is stopping: every stream ends now (its client reconnects, with Last-Event-ID)."""
        self.closing = True
        self._wake(reader for readers in self._by_state.values() for reader in readers)

    def count(self) -> int:
        return sum(len(readers) for readers in self._by_state.values())

    @staticmethod
    def _wake(readers: Iterable[_Reader]) -> None:
        for reader in list(readers):
            reader.news.set()

    @contextlib.contextmanager
    def watch(self, state: StateRecord, attempt: int) -> Iterator[_Reader]:
        reader = _Reader(attempt)
        self._by_state.setdefault(state.id, set()).add(reader)
        self._by_run.setdefault(state.run_id, set()).add(reader)
        try:
            yield reader
        finally:
            for index, key in ((self._by_state, state.id), (self._by_run, state.run_id)):
                readers = index.get(key)
                if readers is not None:
                    readers.discard(reader)
                    if not readers:
                        del index[key]


class _Reader:
    """One stream's follower: woken by news, handed the chunks this replica commits for its attempt."""

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.news = asyncio.Event()
        self.handed: list[tuple[int, str]] = []  # (position, text) committed here, not sent yet
        self.overflowed = False  # the client reads slower than chunks come: read them from storage instead

    def hand(self, chunk: StreamChunkRecord) -> None:
        if chunk.attempt != self.attempt:
            return
        if len(self.handed) >= MAX_HANDED:
            self.handed, self.overflowed = [], True
        if not self.overflowed:
            self.handed.append((chunk.position, chunk.text))
        self.news.set()

    def take_handed(self, position: int) -> list[tuple[int, str]] | None:
        """The handed chunks from `position` on, when they follow on from it ([] when none was handed);
        None when storage must be read: chunks were missed (a gap, or too many), and everything handed is
        committed, so a read finds them."""
        handed = sorted(item for item in self.handed if item[0] >= position)
        missed = self.overflowed or (bool(handed) and handed[0][0] != position)
        self.handed, self.overflowed = [], False
        if missed:
            return None
        run = handed[:1]
        for item in handed[1:]:
            if item[0] == run[-1][0] + 1:
                run.append(item)
            elif item[0] != run[-1][0]:  # a resent chunk may come twice: once is enough
                return None
        return run


@dataclass(frozen=True)
class ChunksRead:
    """Chunks of the attempt, in order, the first at `first_position`."""

    first_position: int
    texts: list[str]


@dataclass(frozen=True)
class StreamEnded:
    """The attempt ended and every chunk was sent; `status` is the state's status then (None: deleted)."""

    next_position: int
    status: str | None


@dataclass(frozen=True)
class KeepAlive:
    """Nothing new for a while: the stream may send a comment so that proxies keep it open."""


StreamEvent = ChunksRead | StreamEnded | KeepAlive


def check_texts(texts: Sequence[object], first_position: int) -> list[str]:
    """The chunks of an upload, each a string that can be stored; `BadRequest` naming the first that cannot."""
    checked: list[str] = []
    for text in texts:
        where = f"Stream chunk at offset {first_position + len(checked)}"
        if not isinstance(text, str):
            raise BadRequest(f"{where}: each line must be one JSON string, got {type(text).__name__}")
        problem = text_problem(text)
        if problem is not None:
            raise BadRequest(f"{where}: {problem}")
        checked.append(text)
    return checked


async def held_attempt(storage: Storage, namespace: str, state_id: str, lease_id: str) -> int:
    """The attempt an upload under `lease_id` writes to: the state's claim count while the lease holds it.
    `NotFound` for a state not in `namespace`, `LeaseLost` (409) when the lease no longer holds it."""
    async with storage.reader() as tx:
        state = await tx.get_state(state_id)
    if state is None or state.namespace != namespace:
        raise NotFound("State not found")
    if state.status != StateStatus.QUEUED or state.lease_id != lease_id:
        raise LeaseLost(
            f"Lease lost: state {state_id} is {state.status} and no longer held under this lease, "
            "so its attempt's stream is closed"
        )
    return state.claims


def chunk_records(state_id: str, attempt: int, first_position: int, texts: Sequence[str]) -> list[StreamChunkRecord]:
    now = now_ms()
    return [StreamChunkRecord(state_id, attempt, first_position + i, text, now) for i, text in enumerate(texts)]


def attempt_ended(state: StateRecord | None, attempt: int) -> bool:
    """Whether attempt `attempt` of the state is over: claimed again since, or no longer held. An attempt
    not started yet (the state waits to be claimed) has not ended."""
    if state is None:
        return True
    if state.claims > attempt:
        return True
    if state.claims == attempt:
        return state.status != StateStatus.QUEUED
    return state.status not in (StateStatus.CREATED, StateStatus.WAITING)  # never to be claimed again


async def open_stream(
    storage: Storage, readers: StreamReaders, namespace: str, state_id: str, attempt: int | None, from_position: int
) -> tuple[int, AsyncGenerator[StreamEvent, None]]:
    """The attempt followed (`attempt`, else the state's latest, else its first) and its events from
    `from_position`. Raises `NotFound` at once for a state not in `namespace`."""
    async with storage.reader() as tx:
        state = await tx.get_state(state_id)
    if state is None or state.namespace != namespace:
        raise NotFound("State not found")
    followed = attempt if attempt is not None else max(state.claims, 1)
    return followed, _follow(storage, readers, state, followed, from_position)


async def _follow(
    storage: Storage, readers: StreamReaders, state: StateRecord, attempt: int, position: int
) -> AsyncGenerator[StreamEvent, None]:
    with readers.watch(state, attempt) as reader:
        must_read = True  # at first; then whenever woken by anything but chunks handed in order
        while not readers.closing:
            reader.news.clear()  # before looking: news meanwhile is not lost
            handed = reader.take_handed(position)
            if handed:
                yield ChunksRead(position, [text for _, text in handed])
                position = handed[-1][0] + 1
                continue
            if must_read or handed is None:
                read = await _read(storage, state.id, attempt, position)
                if isinstance(read, ChunksRead):
                    yield read
                    position = read.first_position + len(read.texts)
                    must_read = True  # there may be more than one batch
                    continue
                if attempt_ended(read, attempt):
                    # The state moved after its attempt's last chunk was stored (the runtime sends chunks
                    # before the result), so one more read finds any chunk the read above missed.
                    last = await _read(storage, state.id, attempt, position, with_state=False)
                    if isinstance(last, ChunksRead):
                        yield last
                        position = last.first_position + len(last.texts)
                        continue
                    yield StreamEnded(position, None if read is None else str(read.status))
                    return
            try:
                await asyncio.wait_for(reader.news.wait(), KEEP_ALIVE_S)
            except TimeoutError:
                yield KeepAlive()
            must_read = not reader.handed  # another replica's chunks, or the state moved


async def _read(
    storage: Storage, state_id: str, attempt: int, position: int, with_state: bool = True
) -> ChunksRead | StateRecord | None:
    """The attempt's chunks from `position` on; when there is none, the state (None: deleted, or not asked)."""
    async with storage.reader() as tx:
        chunks = await tx.stream_chunks(state_id, attempt, position, READ_BATCH)
        if chunks:
            return ChunksRead(position, [text for _, text in chunks])
        return await tx.get_state(state_id) if with_state else None
