"""The runtime: registers node classes, claims states, runs them, and reports every result.

How work flows (one asyncio task each):

* the *claimer* long-polls ``states/enqueue`` for as many states as there are free execution slots
  plus a prefetch: as many states as the workers finish during one claim round trip (measured), at
  least ``workers // 2`` (or 1) and at most ``batch_size`` (default 100). Fast nodes are claimed in
  big batches (a claim costs the server about the same for 1 state as for 50); slow ones a few at a
  time, so states are never hoarded. The next claim goes out once half a prefetch is free, while
  the workers still run the rest;
* *workers* run one state at a time (``execute`` in the loop, or a thread for a plain ``def``), so
  ``workers`` bounds the concurrent ``execute`` calls; a finished state frees its slot at once;
* each outcome is then *delivered* on its own task, retrying with backoff until the server accepts
  it or says the lease is lost; ``executed`` results that finish while a report is in flight share
  the next request (``_batching``), and a lone result goes out at once;
* a report of results also *claims* (eager dispatch): it asks for as many states as there are free
  slots that no claim in flight has asked for, and the server answers with states claimed in the
  transaction that applied the results (the children they created among them). A chain thus costs
  one request per hop; the claimer's long-poll is only for work no result brought;
* the *heartbeat* keeps the lease of every held state alive (every lease/3), until its outcome is
  delivered.

On SIGINT/SIGTERM the runtime stops claiming, hands unstarted states back, gives running nodes
``shutdown_grace_seconds`` to finish, then exits. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ._aiohttp_client import AiohttpClient
from ._batching import MAX_BATCH, BatchUnsupportedError, EagerClaims, ResultBatcher
from ._http import ApiClient, Backoff
from ._stream_upload import StreamUpload
from ._tracing import state_trace_context
from .contract import ClaimedState, EnqueueResponse, SecretsResponse
from .errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    ServerUnavailableError,
)
from .node import BaseNode, Outcome, StreamSink, check_node_classes, node_schema, run_node

logger = logging.getLogger("exospherehost")

# How long one claim request may wait on the server for work (the server caps it at 60 s).
CLAIM_WAIT_MS = 25_000
# Most states one claim takes unless `batch_size` says otherwise. The claims are sized below it by the
# free slots and the measured prefetch, so it only caps fast nodes: there, past about a hundred a
# bigger batch no longer lowers the server's cost per state (16, the original default, left four
# workers of fast nodes at 35-50 % of a tuned runtime's throughput).
DEFAULT_BATCH_SIZE = 100
DEFAULT_LEASE_SECONDS = 60.0
# Attempts at reading secrets while the server answers 500 before the state is failed.
_SECRETS_SERVER_ERROR_ATTEMPTS = 5
# Failing claims are logged at WARNING on the first failure and then once every this many attempts.
_LOG_EVERY_N_FAILURES = 10
# Weight of the newest sample in the running averages of execution and claim round-trip times.
_EWMA_WEIGHT = 0.2
# A claim answered later than this probably waited on the server for work: not a round-trip sample.
_ROUND_TRIP_SAMPLE_LIMIT = 0.25


@dataclass(eq=False)
class _Claim:
    """A state this runtime holds, from the claim until its outcome is delivered or handed back."""

    state_id: str
    node_name: str
    inputs: dict[str, Any]
    lease_id: str | None
    traceparent: str | None = None  # the state's execute span, when the server exports traces
    signal: dict[str, str] | None = None  # the payload of the signal that woke the state (WaitForSignal)
    lost: bool = False
    execution: asyncio.Task[Outcome | None] | None = None
    stream: StreamUpload | None = None  # what the node streams, once it does (BaseNode.stream)
    # True once the state no longer takes an execution slot: executed (its outcome may still be on
    # its way to the server), handed back or given up.
    slot_freed: bool = False


class Runtime:
    """Serves node classes for one namespace: registers them, then runs the states the server hands out.

    ``state_manager_uri`` and ``key`` fall back to ``EXOSPHERE_STATE_MANAGER_URI`` and
    ``EXOSPHERE_API_KEY``. Every configuration problem is reported at once in one
    :class:`~exospherehost.errors.ConfigurationError` (a ``ValueError``).

    * ``workers``: most ``execute`` calls running at once. The runtime claims as many states as it
      has free slots for, plus as many as its workers finish during one claim round trip, so the
      defaults keep up with fast nodes too.
    * ``batch_size``: most states taken in one claim (default 100). Below it the claims adapt: as many
      as the free slots and the measured prefetch call for, so four workers of fast nodes get big
      batches and slow nodes are still claimed a few at a time.
    * ``poll_interval`` (seconds): pause between empty claims, used only with servers that cannot
      long-poll; ``state_manage_version`` (alias ``state_manager_version``): API version prefix.
    * ``shutdown_grace_seconds``: how long running nodes may finish after SIGINT/SIGTERM.
    * ``lease_seconds``: how long a claim stays valid without a heartbeat; the server sends a state
      to its retry policy when the lease of a vanished runtime expires.

    Example::

        Runtime(namespace="MyProject", name="DataProcessor", nodes=[SampleNode]).start()
    """

    _api: ApiClient

    def __init__(
        self,
        namespace: str,
        name: str,
        nodes: Sequence[type[BaseNode]],
        state_manager_uri: str | None = None,
        key: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = 4,
        state_manage_version: str = "v0",
        poll_interval: float = 1,
        *,
        state_manager_version: str | None = None,
        shutdown_grace_seconds: float = 30.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        _configure_default_logging()
        self._namespace = namespace
        self._name = name
        self._instance = f"{socket.gethostname()}:{os.getpid()}"
        self._uri = state_manager_uri or os.environ.get("EXOSPHERE_STATE_MANAGER_URI") or ""
        self._key = key or os.environ.get("EXOSPHERE_API_KEY") or ""
        self._version = state_manager_version or state_manage_version
        self._batch_size = batch_size
        self._workers = workers
        self._poll_interval = poll_interval
        self._grace = shutdown_grace_seconds
        self._lease_seconds = lease_seconds
        problems = self._check_settings(state_manage_version, state_manager_version)
        problems += ["nodes must list at least one node class"] if not nodes else check_node_classes(nodes)
        if problems:
            raise ConfigurationError(problems, "Runtime configuration")
        self._nodes: dict[str, type[BaseNode]] = {node.__name__: node for node in nodes}
        # States waiting for or in `execute` never exceed the workers plus the prefetch, so a busy
        # runtime does not sit on work another runtime could start now.
        self._min_prefetch = min(batch_size, max(1, workers // 2))
        # Executed states whose outcome is still on its way to the server also hold a lease; past this
        # many, claiming waits for the server to take results (a server that accepts claims but not
        # results must not make the runtime hold ever more states).
        self._max_held = workers + batch_size + MAX_BATCH
        self._held: dict[str, _Claim] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reset_loop_state()

    def _reset_loop_state(self) -> None:
        # Fresh per start(): asyncio primitives bind to the loop that first uses them.
        self._held.clear()
        self._in_slots = 0  # claimed states not yet executed: queued or running
        self._asked = 0  # states asked for by claims in flight (the long-poll and eager claims)
        # Running averages (seconds) that size the prefetch; None until measured.
        self._execution_time: float | None = None
        self._round_trip: float | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._queue: asyncio.Queue[_Claim | None] = asyncio.Queue()

    def _check_settings(self, state_manage_version: str, state_manager_version: str | None) -> list[str]:
        problems: list[str] = []
        for label, value in (("namespace", self._namespace), ("name", self._name)):
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{label} must be a non-empty string, got {value!r}")
        if not self._uri:
            problems.append("state_manager_uri is not set: pass it or set EXOSPHERE_STATE_MANAGER_URI")
        if not self._key:
            problems.append("key is not set: pass it or set EXOSPHERE_API_KEY")
        if state_manager_version and state_manage_version not in ("v0", state_manager_version):
            problems.append(
                f"state_manage_version={state_manage_version!r} and state_manager_version="
                f"{state_manager_version!r} disagree: pass only one"
            )
        for label, number in (("batch_size", self._batch_size), ("workers", self._workers)):
            if not isinstance(number, int) or isinstance(number, bool) or number < 1:
                problems.append(f"{label} must be an integer >= 1, got {number!r}")
        if not _is_number(self._poll_interval) or self._poll_interval < 0:
            problems.append(f"poll_interval must be a number of seconds >= 0, got {self._poll_interval!r}")
        if not _is_number(self._grace) or self._grace < 0:
            problems.append(f"shutdown_grace_seconds must be a number >= 0, got {self._grace!r}")
        if not _is_number(self._lease_seconds) or not 3 <= self._lease_seconds <= 86_400:
            problems.append(f"lease_seconds must be between 3 and 86400, got {self._lease_seconds!r}")
        return problems

    def start(self) -> asyncio.Task[None] | None:
        """Run until stopped. Blocks when called outside an event loop (stopping on SIGINT/SIGTERM);
        inside a running loop, returns the runtime's ``asyncio.Task`` instead.

        Example::

            runtime = Runtime(namespace="MyProject", name="Workers", nodes=[SampleNode])
            runtime.start()                 # in a script: blocks

            task = runtime.start()          # inside async code: runs in the background
            runtime.stop(); await task      # graceful stop
        """
        self._reset_loop_state()
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._main(handle_signals=True))
            return None
        return asyncio.create_task(self._main(handle_signals=False), name=f"exosphere-runtime-{self._name}")

    def stop(self) -> None:
        """Ask for a graceful shutdown, as SIGTERM does. Safe to call from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._request_stop, "stop() called")

    def _request_stop(self, reason: str) -> None:
        if self._stopping.is_set():
            logger.warning("%s again: stopping now without waiting for running nodes", reason)
            self._stop_now.set()
        else:
            logger.info("%s: stopping gracefully (repeat to stop at once)", reason)
            self._stopping.set()

    async def _main(self, handle_signals: bool) -> None:
        self._loop = asyncio.get_running_loop()
        if handle_signals:
            self._install_signal_handlers()
        base_url = f"{self._uri.rstrip('/')}/{self._version}"
        self._api = AiohttpClient(base_url, self._key, max_connections=2 * (self._workers + self._batch_size) + 4)
        self._batcher = ResultBatcher(
            self._api,
            f"{self._namespace_path}/states/executed",
            claims=EagerClaims(self._reserve_claim, self._settle_claim),
        )
        try:
            if await self._register():
                await self._serve()
        finally:
            if handle_signals:
                self._remove_signal_handlers()
            await self._api.aclose()

    async def _serve(self) -> None:
        claimer = asyncio.create_task(_supervised("claim loop", self._claim_loop))
        heartbeat = asyncio.create_task(_supervised("heartbeat loop", self._heartbeat_loop))
        workers = [asyncio.create_task(self._worker_loop()) for _ in range(self._workers)]
        cancelled = False
        try:
            await self._stopping.wait()
        except asyncio.CancelledError:
            # The host cancelled the task: still hand work back before propagating.
            cancelled = True
        await self._shutdown(claimer, heartbeat, workers)
        if cancelled:
            raise asyncio.CancelledError

    # -- registration ---------------------------------------------------------------------------

    async def _register(self) -> bool:
        """Register the node classes; retries while the server is unreachable. False if stopped first."""
        stopping = self._stopping
        body = {
            "runtime_name": self._name,
            "runtime_namespace": self._namespace,
            "nodes": [node_schema(node, self._namespace) for node in self._nodes.values()],
        }
        try:
            await self._api.request_with_retry(
                "PUT",
                f"{self._namespace_path}/nodes/",
                json=body,
                action=f"Registering nodes of runtime {self._name!r}",
                backoff=Backoff(initial=0.5, maximum=5.0),
                give_up=stopping.is_set,
            )
        except ApiError as exc:
            if stopping.is_set() and exc.retryable:
                return False
            raise
        logger.info(
            "Runtime %r registered %d node(s) in namespace %r: %s",
            self._name,
            len(self._nodes),
            self._namespace,
            ", ".join(self._nodes),
        )
        return True

    # -- claiming -------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while True:
            prefetch = self._prefetch()
            free = self._unasked_slots(prefetch)
            # Until the queue has drained into the workers, a claim could only be small: wait, then
            # claim at least half a prefetch in one go. Half, not all: the next claim is then on its
            # way while the workers still run the rest, instead of after they have run everything.
            if free < max(1, prefetch // 2):
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            started = loop.time()
            self._asked += free
            try:
                states = await self._claim(free)
            except ApiError as exc:
                delay = backoff.next_delay()
                level = logging.WARNING if backoff.attempts % _LOG_EVERY_N_FAILURES == 1 else logging.DEBUG
                logger.log(level, "%s; retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            finally:
                self._asked -= free
            if backoff.attempts:
                logger.info("Claiming states works again after %d failed attempt(s)", backoff.attempts)
                backoff.reset()
            elapsed = loop.time() - started
            if states and elapsed < _ROUND_TRIP_SAMPLE_LIMIT:
                self._round_trip = _average(self._round_trip, elapsed)
            for state in states:
                self._accept(state)
            if not states and elapsed < CLAIM_WAIT_MS / 2000:
                # An empty answer that came back at once: the server does not long-poll.
                await asyncio.sleep(self._poll_interval)

    def _unasked_slots(self, prefetch: int) -> int:
        """States this runtime may still ask for: free slots plus the prefetch, less what claims in
        flight asked for, within the bound on held states."""
        slots = self._workers + prefetch - self._in_slots
        return min(self._batch_size, slots - self._asked, self._max_held - len(self._held) - self._asked)

    def _reserve_claim(self) -> dict[str, Any] | None:
        """The ``claim`` a report of results sends along (eager dispatch); its slots stay asked for
        until :meth:`_settle_claim`."""
        if self._stopping.is_set():
            return None
        count = self._unasked_slots(self._prefetch())
        if count < 1 and self._in_slots < self._workers and len(self._held) + self._asked < self._max_held:
            # A worker is idle: its next state comes with this answer rather than after the long-poll's,
            # even when the long-poll already asked for the whole prefetch (a chain's next hop).
            count = 1
        if count < 1:
            return None
        self._asked += count
        return {"nodes": list(self._nodes), "max": count, "lease_ms": self._lease_ms}

    def _settle_claim(self, claim: dict[str, Any] | None, states: list[ClaimedState]) -> None:
        """Take the states a report's answer carried, and give back what its ``claim`` asked for."""
        if claim is not None:
            self._asked -= claim["max"]
            self._slot_freed.set()  # the claimer may ask for what this claim did not get
        for state in states:
            self._accept(state)

    def _prefetch(self) -> int:
        """How many states to claim beyond the free slots: what the workers finish in one round trip."""
        if self._execution_time is None or self._round_trip is None:
            return self._min_prefetch
        finished_per_round_trip = self._workers * self._round_trip / max(self._execution_time, 1e-6)
        return int(min(self._batch_size, max(self._min_prefetch, finished_per_round_trip)))

    async def _claim(self, count: int) -> list[ClaimedState]:
        body = {
            "nodes": list(self._nodes),
            "batch_size": count,
            "wait_ms": CLAIM_WAIT_MS,
            "lease_ms": self._lease_ms,
            # Recorded on each claimed state: which runtime, and which of its processes, ran it.
            "runtime_name": self._name,
            "runtime_instance": self._instance,
        }
        # An answer of another shape raises UnexpectedAnswerError: logged, and claiming goes on with backoff.
        answer = await self._api.request(
            "POST",
            f"{self._namespace_path}/states/enqueue",
            answer=EnqueueResponse,
            json=body,
            timeout=CLAIM_WAIT_MS / 1000 + 30,
            action="Claiming states",
        )
        return answer.states

    def _accept(self, state: ClaimedState) -> None:
        claim = _Claim(
            state.state_id, state.node_name, dict(state.inputs), state.lease_id, state.traceparent, state.signal
        )
        self._held[claim.state_id] = claim
        self._in_slots += 1
        self._queue.put_nowait(claim)

    # -- executing ------------------------------------------------------------------------------

    async def _worker_loop(self) -> None:
        while (claim := await self._queue.get()) is not None:
            if self._stopping.is_set():
                await self._release(claim)
                continue
            try:
                await self._process(claim)
            except Exception:
                # A bug here must cost one state, never the worker (the original lost workers this way).
                logger.exception("Unexpected error while handling state %s (%s)", claim.state_id, claim.node_name)
                self._finish(claim)

    async def _process(self, claim: _Claim) -> None:
        if claim.lost:
            self._finish(claim)
            return
        started = asyncio.get_running_loop().time()
        claim.execution = asyncio.create_task(self._execute(claim))
        try:
            outcome = await claim.execution
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if claim.lost and current is not None and not current.cancelling():
                self._finish(claim)  # cancelled by the heartbeat: the lease is gone
                return
            raise
        claim.execution = None
        self._execution_time = _average(self._execution_time, asyncio.get_running_loop().time() - started)
        if outcome is None:
            self._finish(claim)
            return
        # The worker (and its slot) moves on to the next state while this outcome is reported.
        self._free_slot(claim)
        delivery = asyncio.create_task(self._deliver_and_finish(claim, outcome))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    async def _deliver_and_finish(self, claim: _Claim, outcome: Outcome) -> None:
        # Cancelled (shutdown out of grace), the state stays held, and is handed back.
        try:
            if claim.stream is not None:
                # Every chunk is stored before the result: a reader that sees the attempt end has them all.
                await claim.stream.close()
            await self._deliver(claim, outcome)
        except Exception:
            # A bug here must cost one state, never leave it held for ever.
            logger.exception("Unexpected error while reporting state %s (%s)", claim.state_id, claim.node_name)
        self._finish(claim)

    async def _execute(self, claim: _Claim) -> Outcome | None:
        """Run the node for one state; None when the state is given up without anything to report."""
        node = self._nodes.get(claim.node_name)
        if node is None:
            return Outcome.failed(LookupError(f"Runtime {self._name!r} has no node named {claim.node_name!r}"))
        secrets: dict[str, Any] = {}
        if node.Secrets.model_fields:
            try:
                secrets = await self._fetch_secrets(claim)
            except (ConflictError, NotFoundError) as exc:
                # The server already moved the state on: it marks it ERRORED itself when it cannot
                # decrypt the graph's secrets, so there is nothing to run and nothing to report.
                logger.error("Giving up state %s (%s) without running it: %s", claim.state_id, claim.node_name, exc)
                return None
            except ApiError as exc:
                return Outcome.failed(exc)
        with state_trace_context(claim.traceparent):
            return await run_node(node, claim.inputs, secrets, claim.signal, self._stream_sink(claim))

    def _stream_sink(self, claim: _Claim) -> StreamSink | None:
        """Where the node's `stream` calls go: the attempt's upload (a server without leases cannot take one)."""
        lease_id = claim.lease_id
        if lease_id is None:
            return None
        upload = claim.stream = StreamUpload(
            self._api, self._state_path(claim, "stream"), lease_id, give_up=lambda: claim.lost
        )
        return upload.append

    async def _fetch_secrets(self, claim: _Claim) -> dict[str, Any]:
        server_errors = 0

        def retry(error: ApiError) -> bool:
            # An unreachable or restarting server is waited for while the lease holds; a server that
            # keeps answering 500 (say, it cannot decrypt the secrets) would be waited for for ever.
            nonlocal server_errors
            if isinstance(error, ServerUnavailableError) or error.status_code in (408, 429):
                return True
            server_errors += 1
            return error.retryable and server_errors < _SECRETS_SERVER_ERROR_ATTEMPTS

        answer = await self._api.request_with_retry(
            "GET",
            self._state_path(claim, "secrets"),
            answer=SecretsResponse,
            action=f"Reading secrets for state {claim.state_id}",
            retry_if=retry,
            give_up=lambda: claim.lost,
        )
        return dict(answer.secrets)

    async def _deliver(self, claim: _Claim, outcome: Outcome) -> None:
        """Report an outcome, retrying until the server accepts it or the lease is lost."""
        body = dict(outcome.body)
        if claim.lease_id is not None:
            body["lease_id"] = claim.lease_id
        action = f"Reporting {outcome.endpoint} for state {claim.state_id} ({claim.node_name})"
        try:
            try:
                if outcome.endpoint != "executed":
                    raise BatchUnsupportedError
                await self._batcher.deliver({"state_id": claim.state_id, **body}, action)
            except BatchUnsupportedError:
                await self._api.request_with_retry(
                    "POST",
                    self._state_path(claim, outcome.endpoint),
                    json=body,
                    action=action,
                    give_up=lambda: claim.lost,
                )
        except (ConflictError, NotFoundError) as exc:
            logger.warning("Result of state %s (%s) discarded: %s", claim.state_id, claim.node_name, exc)
            return
        except ApiError as exc:
            if outcome.endpoint != "errored" and not exc.retryable and not isinstance(exc, AuthenticationError):
                # The server refused this result for good (e.g. 422): fail the state visibly instead,
                # so the graph's retry policy applies.
                failed = Outcome.failed(exc)
                usage = outcome.body.get("usage")  # what the attempt used still counts
                refused = failed if usage is None else Outcome("errored", {**failed.body, "usage": usage})
                await self._deliver(claim, refused)
            else:
                # Nothing else can be sent: the state's lease expires and the server retries it.
                logger.error("Could not report state %s (%s): %s", claim.state_id, claim.node_name, exc)
            return
        if outcome.endpoint == "errored":
            logger.warning("State %s (%s) failed: %s", claim.state_id, claim.node_name, outcome.body["error"])
        else:
            logger.debug("State %s (%s) reported %s", claim.state_id, claim.node_name, outcome.endpoint)

    def _free_slot(self, claim: _Claim) -> None:
        if not claim.slot_freed:
            claim.slot_freed = True
            self._in_slots -= 1
            self._slot_freed.set()

    def _finish(self, claim: _Claim) -> None:
        self._free_slot(claim)
        if claim.stream is not None:
            claim.stream.cancel()  # a no-op once closed; else the attempt was given up
        if self._held.pop(claim.state_id, None) is not None:
            self._slot_freed.set()

    # -- leases ---------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self._lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            claims = [claim for claim in self._held.values() if claim.lease_id is not None and not claim.lost]
            await asyncio.gather(*(self._heartbeat(claim, timeout=interval) for claim in claims))

    async def _heartbeat(self, claim: _Claim, timeout: float) -> None:
        try:
            await self._api.request(
                "POST",
                self._state_path(claim, "heartbeat"),
                json={"lease_id": claim.lease_id, "lease_ms": self._lease_ms},
                timeout=timeout,
                action=f"Heartbeat for state {claim.state_id}",
            )
        except (ConflictError, NotFoundError) as exc:
            if claim.state_id in self._held:
                self._lose(claim, exc)
        except ApiError as exc:
            logger.debug("%s", exc)

    def _lose(self, claim: _Claim, reason: ApiError) -> None:
        claim.lost = True
        if claim.execution is not None and not claim.execution.done():
            claim.execution.cancel()
        logger.warning("Abandoning state %s (%s): %s", claim.state_id, claim.node_name, reason.detail)

    async def _release(self, claim: _Claim) -> None:
        """Hand a claimed state back so that another runtime can take it at once."""
        try:
            if claim.lease_id is None:
                logger.warning("Cannot hand back state %s: the server gave no lease for it", claim.state_id)
                return
            await self._api.request_with_retry(
                "POST",
                self._state_path(claim, "release"),
                json={"lease_id": claim.lease_id},
                action=f"Handing back state {claim.state_id}",
                backoff=Backoff(initial=0.05, maximum=0.5),
                max_attempts=3,
            )
        except ApiError as exc:
            logger.warning("%s", exc)
        finally:
            self._finish(claim)

    # -- shutdown -------------------------------------------------------------------------------

    async def _shutdown(
        self, claimer: asyncio.Task[None], heartbeat: asyncio.Task[None], workers: list[asyncio.Task[None]]
    ) -> None:
        claimer.cancel()
        await asyncio.gather(claimer, return_exceptions=True)
        unstarted = self._drain_queue()
        running = len(self._held) - len(unstarted)
        logger.info(
            "Shutting down: handing back %d unstarted state(s), waiting up to %g s for %d running",
            len(unstarted),
            self._grace,
            running,
        )
        await asyncio.gather(*(self._release(claim) for claim in unstarted))
        for _ in workers:
            self._queue.put_nowait(None)
        all_done = asyncio.create_task(self._finish_running(workers))
        stop_now = asyncio.create_task(self._stop_now.wait())
        waiters: set[asyncio.Future[Any]] = {all_done, stop_now}
        await asyncio.wait(waiters, timeout=self._grace, return_when=asyncio.FIRST_COMPLETED)
        stop_now.cancel()
        if not all_done.done():
            logger.warning("Interrupting %d node(s) still running; their states are handed back", len(self._held))
            all_done.cancel()
            interrupted = [*workers, *self._deliveries]
            for task in interrupted:
                task.cancel()
            await asyncio.gather(all_done, *interrupted, return_exceptions=True)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        await asyncio.gather(*(self._release(claim) for claim in list(self._held.values())))
        logger.info("Runtime %r stopped", self._name)

    async def _finish_running(self, workers: list[asyncio.Task[None]]) -> None:
        """Let the workers finish their nodes, then wait for every outcome to be reported."""
        await asyncio.gather(*workers, return_exceptions=True)
        while self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)

    def _drain_queue(self) -> list[_Claim]:
        claims: list[_Claim] = []
        while not self._queue.empty():
            claim = self._queue.get_nowait()
            if claim is not None:
                claims.append(claim)
        return claims

    def _install_signal_handlers(self) -> None:
        assert self._loop is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._loop.add_signal_handler(sig, self._request_stop, f"{sig.name} received")
            except (NotImplementedError, RuntimeError, ValueError):
                logger.debug("Cannot handle %s here (not the main thread, or unsupported)", sig.name)

    def _remove_signal_handlers(self) -> None:
        assert self._loop is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.remove_signal_handler(sig)

    # -- paths ----------------------------------------------------------------------------------

    @property
    def _lease_ms(self) -> int:
        return int(self._lease_seconds * 1000)

    @property
    def _namespace_path(self) -> str:
        return f"/namespace/{quote(self._namespace, safe='')}"

    def _state_path(self, claim: _Claim, action: str) -> str:
        return f"{self._namespace_path}/state/{quote(claim.state_id, safe='')}/{action}"


def _average(average: float | None, sample: float) -> float:
    return sample if average is None else average + _EWMA_WEIGHT * (sample - average)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _configure_default_logging() -> None:
    """Give scripts visible logs unless the application configured logging or opted out."""
    if logging.getLogger().handlers or os.environ.get("EXOSPHERE_DISABLE_DEFAULT_LOGGING"):
        return
    level_name = os.environ.get("EXOSPHERE_LOG_LEVEL", "INFO").strip().upper()
    level = logging.getLevelNamesMapping().get(level_name, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx (a node's own requests, or a StateManager) logs every request at INFO: thousands of
    # lines a second on a busy runtime.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


async def _supervised(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run one of the runtime's background loops for its whole life.

    An unexpected error is logged with its traceback and the loop starts again after a backoff: a
    loop that died silently left a process that looked alive and never claimed again.
    """
    backoff = Backoff(initial=0.5, maximum=30.0)
    while True:
        try:
            await loop()
            return
        except Exception:
            delay = backoff.next_delay()
            logger.exception("The runtime's %s failed unexpectedly; starting it again in %.1f s", name, delay)
            await asyncio.sleep(delay)
