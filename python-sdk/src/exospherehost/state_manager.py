"""Client for managing graphs and runs: upsert a graph, trigger a run, follow it to the end.

Answers are parsed as the models of :mod:`exospherehost.contract` and handed back as plain mappings
with the keys the server sent (``graph["validation_status"]``), as the original SDK returned them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal, Self
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel

from ._http import Backoff, M
from ._httpx_client import HttpxClient
from .contract import (
    ApiKeyInfo,
    AuditLogResponse,
    CancelRunResponse,
    CreatedKeyResponse,
    DeleteLimitResponse,
    GraphResponse,
    GraphTrigger,
    KeyRole,
    LimitRequest,
    LimitResponse,
    ListGraphsResponse,
    ListKeysResponse,
    ListLimitsResponse,
    ListNodesResponse,
    ListRunsResponse,
    ManualRetryResponse,
    NamespacesResponse,
    RunEvent,
    RunProgressResponse,
    RunResponse,
    RunStatesResponse,
    SendSignalResponse,
    StateResponse,
    StreamChunk,
    StreamEnd,
    TriggerManyResponse,
    TriggerResponse,
)
from .errors import (
    ApiError,
    ConfigurationError,
    GraphValidationError,
    NotFoundError,
    RunTimeoutError,
    UnexpectedAnswerError,
)
from .models import CronTrigger, GraphNodeModel, GraphValidationStatusEnum, RetryPolicyModel, StoreConfigModel
from .statuses import RunStatus

logger = logging.getLogger("exospherehost")

# Idempotent reads and PUTs are sent this many times by default while they fail with network errors or 5xx.
_READ_ATTEMPTS = 5
# The server sends a keep-alive comment every 15 s: a stream silent for this long is dead.
_STREAM_SILENCE_S = 45.0
_MAX_CONNECTIONS = 256
_RUN_EVENTS = ("snapshot", "change", "finished")


_STATES_PAGE = 1000  # states per request when reading a run: the server pages them


class StateManager:
    """Talks to the state manager on behalf of one namespace: graphs and runs.

    ``state_manager_uri`` and ``key`` fall back to the environment variables
    ``EXOSPHERE_STATE_MANAGER_URI`` and ``EXOSPHERE_API_KEY``; without a key none is sent, which
    only a local server started without an API key accepts. Errors are raised as
    :mod:`exospherehost.errors` types carrying the server's message. A request that fails in a way
    that may pass (no answer, 408, 429, 5xx) is sent up to ``attempts`` times, with backoff, before
    its error is raised (a trigger only while it surely never arrived); ``wait_for_run`` keeps
    trying until its own ``timeout``. ``timeout`` is the seconds one request may take.

    Example::

        sm = StateManager(namespace="MyProject")
        run = await sm.trigger("my-graph", inputs={"user_id": "42"})
        summary = await sm.wait_for_run(run["run_id"], timeout=60)
        print(summary["status"])  # SUCCESS
    """

    def __init__(
        self,
        namespace: str,
        state_manager_uri: str | None = None,
        key: str | None = None,
        state_manager_version: str = "v0",
        *,
        timeout: float = 30.0,
        attempts: int = _READ_ATTEMPTS,
    ) -> None:
        if attempts < 1:
            raise ConfigurationError([f"attempts must be 1 or more, not {attempts}"], "StateManager")
        self._namespace = namespace
        self._uri = state_manager_uri or os.environ.get("EXOSPHERE_STATE_MANAGER_URI")
        self._key = key or os.environ.get("EXOSPHERE_API_KEY")
        self._version = state_manager_version
        self._timeout = timeout
        self._attempts = attempts
        self._api: HttpxClient | None = None
        self._api_loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections (optional; ``async with StateManager(...)`` does it)."""
        if self._api is not None and self._api_loop is asyncio.get_running_loop():
            await self._api.aclose()
        self._api = None
        self._api_loop = None

    async def trigger(
        self,
        graph_name: str,
        inputs: dict[str, str] | None = None,
        store: dict[str, str] | None = None,
        start_delay: int = 0,
        idempotency_key: str | None = None,
        deadline_seconds: float | None = None,
        *,
        priority: int | None = None,
        budget: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Start a run of ``graph_name``; returns ``{"status": "CREATED", "run_id": ..., "duplicate": ...}``.

        ``inputs`` override the first node's template inputs, ``store`` seeds the run's key/value
        store, and ``start_delay`` (milliseconds) postpones the first node. With ``idempotency_key``,
        a second trigger of this graph with the same key (within the server's key time, 24 h by
        default) starts nothing and answers the first run's id with ``"duplicate": True``; such a
        trigger is also resent after any failure that may pass, since resending cannot start a second run.
        ``deadline_seconds`` cancels the run (reason ``deadline exceeded``) if it is still pending that
        long after the trigger; by default the graph's ``deadline_seconds`` applies, if it has one.
        ``priority`` (higher first; default the graph's, else 0) orders its states in the claim queue,
        each point worth one second of waiting; ``budget`` (``{"tokens": N, "cost_usd": X}``, either
        or both; default the graph's) cancels the run with reason ``budget exceeded`` once its nodes
        report more usage (see docs/flow-control.md).

        Example::

            run = await sm.trigger("my-graph", inputs={"user_id": "42"}, idempotency_key="order-1234")
            urgent = await sm.trigger("my-graph", priority=10, budget={"tokens": 200_000, "cost_usd": 2.5})
        """
        body: dict[str, Any] = {"start_delay": start_delay, "inputs": inputs or {}, "store": store or {}}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if deadline_seconds is not None:
            body["deadline_seconds"] = deadline_seconds
        if priority is not None:
            body["priority"] = priority
        if budget is not None:
            body["budget"] = dict(budget)
        result = await self._client().request_with_retry(
            "POST",
            f"{self._graph_path(graph_name)}/trigger",
            answer=TriggerResponse,
            json=body,
            action=f"Triggering graph {graph_name!r}",
            max_attempts=self._attempts,
            # A trigger creates a run: without a key, only resend it when the first one surely never left.
            retry_if=lambda error: idempotency_key is not None or not error.request_sent,
        )
        return _as_sent(result)

    async def trigger_many(self, graph_name: str, runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Start many runs of ``graph_name`` in one request; one ``trigger`` answer per run, in order.

        Each entry is a trigger's body: ``inputs``, ``store``, ``start_delay``, ``idempotency_key``,
        ``deadline_seconds``, ``priority`` and ``budget``, all optional. The server starts them in one
        transaction, all or none; a bad entry is refused with a message naming its position
        (``runs[3]: ...``). At most 1,000 runs per call.

        Example::

            started = await sm.trigger_many("my-graph", [{"inputs": {"user_id": str(i)}} for i in range(500)])
            run_ids = [run["run_id"] for run in started]
        """
        body = {"runs": [dict(run) for run in runs]}
        keyed = all(run.get("idempotency_key") is not None for run in runs)
        result = await self._client().request_with_retry(
            "POST",
            f"{self._graph_path(graph_name)}/trigger-many",
            answer=TriggerManyResponse,
            json=body,
            action=f"Triggering {len(body['runs'])} runs of graph {graph_name!r}",
            max_attempts=self._attempts,
            # Resending cannot start runs twice only when every run carries an idempotency key.
            retry_if=lambda error: keyed or not error.request_sent,
        )
        return [_as_sent(run) for run in result.runs]

    async def get_graph(self, graph_name: str) -> dict[str, Any]:
        """Read a graph template, including ``validation_status`` and ``validation_errors``.

        Example::

            graph = await sm.get_graph("my-graph")
            print(graph["validation_status"])  # VALID
        """
        return _as_sent(await self._read_graph(graph_name))

    async def upsert_graph(
        self,
        graph_name: str,
        graph_nodes: list[GraphNodeModel],
        secrets: dict[str, str],
        retry_policy: RetryPolicyModel | None = None,
        store_config: StoreConfigModel | None = None,
        triggers: list[CronTrigger] | None = None,
        validation_timeout: int = 60,
        polling_interval: int = 1,
        *,
        timeout_seconds: float | None = None,
        deadline_seconds: float | None = None,
        priority: int | None = None,
        budget: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Create or replace a graph template and wait until the server has validated it.

        Returns the validated graph. Raises :class:`GraphValidationError` (with the server's
        errors) when the graph is invalid or still pending after ``validation_timeout`` seconds.
        ``timeout_seconds`` is the time-out of nodes that set none; ``deadline_seconds`` cancels runs
        still pending that long after their trigger (reason ``deadline exceeded``). ``priority`` and
        ``budget`` are the defaults of runs whose trigger gives none (see :meth:`trigger`).

        Example::

            graph = await sm.upsert_graph(
                "my-graph",
                [GraphNodeModel(node_name="Greet", namespace="MyProject", identifier="greet",
                                inputs={"name": "world"}, next_nodes=[])],
                secrets={},
                triggers=[CronTrigger(expression="0 9 * * 1-5", store={"cursor": "0"})],
            )
        """
        # A node without a time-out is sent as before the field existed.
        nodes = [
            node.model_dump(mode="json", exclude={"timeout_seconds"} if node.timeout_seconds is None else None)
            for node in graph_nodes
        ]
        body: dict[str, Any] = {"secrets": secrets, "nodes": nodes}
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        if deadline_seconds is not None:
            body["deadline_seconds"] = deadline_seconds
        if priority is not None:
            body["priority"] = priority
        if budget is not None:
            body["budget"] = dict(budget)
        if retry_policy is not None:
            body["retry_policy"] = retry_policy.model_dump(mode="json")
        if store_config is not None:
            body["store_config"] = store_config.model_dump(mode="json")
        if triggers is not None:
            # `inputs` and `store` are left out when empty: the same body as before they existed.
            body["triggers"] = [
                GraphTrigger(type="CRON", value=t).model_dump(mode="json", exclude_defaults=True) for t in triggers
            ]
        try:
            graph = await self._client().request_with_retry(
                "PUT",
                self._graph_path(graph_name),
                answer=GraphResponse,
                json=body,
                action=f"Upserting graph {graph_name!r}",
                max_attempts=self._attempts,
            )
        except ApiError as exc:
            if exc.status_code in (400, 422):
                raise GraphValidationError(graph_name, "INVALID", _error_messages(exc.detail)) from exc
            raise
        return _as_sent(await self._await_validation(graph_name, graph, validation_timeout, polling_interval))

    async def _await_validation(
        self, graph_name: str, graph: GraphResponse, validation_timeout: float, polling_interval: float
    ) -> GraphResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + validation_timeout
        # Only PENDING means "still validating"; any other status is final.
        while graph.validation_status is GraphValidationStatusEnum.PENDING:
            if loop.time() >= deadline:
                message = f"validation did not finish within {validation_timeout:g} s"
                raise GraphValidationError(graph_name, "PENDING", [message])
            await asyncio.sleep(polling_interval)
            graph = await self._read_graph(graph_name)
        if graph.validation_status is not GraphValidationStatusEnum.VALID:
            raise GraphValidationError(graph_name, graph.validation_status.value, graph.validation_errors)
        return graph

    async def _read_graph(self, graph_name: str) -> GraphResponse:
        return await self._read(self._graph_path(graph_name), GraphResponse, f"Reading graph {graph_name!r}")

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """Read a run's summary: ``status`` (PENDING, SUCCESS, FAILED, CANCELLED), counts and ``finished``.

        A cancelled run carries its ``cancel_reason``; ``warnings`` say, for instance, that no runtime
        serves a node the run waits for.

        Example::

            run = await sm.get_run(run_id)
            print(run["status"], run["success_count"], run["errored_count"])
        """
        return _as_sent(await self._read(self._run_path(run_id), RunResponse, f"Reading run {run_id}"))

    async def cancel_run(self, run_id: str, reason: str | None = None) -> dict[str, Any]:
        """Cancel a pending run: every state of it that has not ended becomes ``CANCELLED``.

        Returns ``{"run_id", "status": "CANCELLED", "cancelled_states": N, "reason"}``; cancelling again
        answers the same. Nodes executing for the run are cancelled by their runtimes within one
        heartbeat interval, and nothing they report afterwards is applied. Raises
        :class:`ConflictError` for a run that has already finished (the message names its status) and
        :class:`NotFoundError` for an unknown run.

        Example::

            cancelled = await sm.cancel_run(run_id, reason="wrong input file")
            print(cancelled["cancelled_states"])
        """
        result = await self._client().request_with_retry(
            "POST",
            f"{self._run_path(run_id)}/cancel",
            answer=CancelRunResponse,
            json={"reason": reason},
            action=f"Cancelling run {run_id}",
            max_attempts=self._attempts,
        )
        return _as_sent(result)

    async def send_signal(self, run_id: str, name: str, payload: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Send signal ``name`` to a run: every state of it waiting for it (``WaitForSignal``) runs again
        with ``payload`` as its ``self.signal``, and a wait for it that starts later gets it at once.

        Returns ``{"run_id", "name", "woken": N}``. Raises :class:`NotFoundError` for an unknown run and
        :class:`ConflictError` for a run that has ended or was cancelled.

        Example::

            answer = await sm.send_signal(run_id, "approval", {"approved": "yes", "by": "ada"})
            print(answer["woken"])  # 1
        """
        result = await self._client().request_with_retry(
            "POST",
            f"{self._run_path(run_id)}/signals/{quote(name, safe='')}",
            answer=SendSignalResponse,
            json=dict(payload or {}),
            action=f"Sending signal {name} to run {run_id}",
            max_attempts=self._attempts,
        )
        return _as_sent(result)

    async def get_run_states(self, run_id: str) -> list[dict[str, Any]]:
        """Every state of a run, oldest first, with status, inputs, outputs and error.

        Example::

            for state in await sm.get_run_states(run_id):
                print(state["identifier"], state["status"], state["outputs"])
        """
        states: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self._read(
                f"{self._run_path(run_id)}/states?page={page}&size={_STATES_PAGE}",
                RunStatesResponse,
                f"Reading states of run {run_id}",
            )
            states += [_as_sent(state) for state in body.states]
            if len(body.states) < _STATES_PAGE or len(states) >= body.total:
                return states
            page += 1

    async def watch_run(self, run_id: str) -> AsyncIterator[RunEvent]:
        """Follow a run live: its progress now, then after each change, until it has finished.

        Yields :class:`~exospherehost.contract.RunEvent` items (status, counts, per-node counts by
        status) from the server's event stream; the last one has ``finished=True``, and the iteration
        ends there. A dropped connection or a restarting server is reconnected with backoff, resuming
        after the last event seen (``Last-Event-ID``): no event older than one already yielded comes
        twice, and the progress after a gap comes as one event. Raises :class:`NotFoundError` for an
        unknown run (or one deleted while followed) and :class:`AuthenticationError` for a refused key.

        Example::

            async for event in sm.watch_run(run["run_id"]):
                print(event.event, event.status, f"{event.success_count}/{event.total_count}")
            # the loop ends when the run has finished: event.status is SUCCESS or FAILED
        """
        last: int | None = None
        backoff = Backoff(initial=0.2, maximum=5.0)
        action = f"Following run {run_id}"
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                async for sse in self._client().stream_events(
                    f"{self._run_path(run_id)}/events", headers=headers, read_timeout=_STREAM_SILENCE_S, action=action
                ):
                    if sse.event == "gone":
                        raise NotFoundError(404, f"Run {run_id} was deleted", action)
                    if sse.event not in _RUN_EVENTS:
                        continue  # an event kind this SDK does not know yet
                    try:
                        event = RunEvent.model_validate({**json.loads(sse.data), "event": sse.event})
                    except ValueError as exc:  # not JSON, or not a RunEvent (pydantic's ValidationError)
                        problem = f"a {sse.event} event does not fit RunEvent: {exc}"
                        raise UnexpectedAnswerError(200, problem, action) from None
                    backoff.reset()
                    if last is not None and event.version <= last and not event.finished:
                        continue
                    last = event.version
                    yield event
                    if event.finished:
                        return
            except ApiError as exc:
                if not exc.retryable:
                    raise
                delay = backoff.next_delay()
                logger.debug("%s; reconnecting in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            # The server ended the stream before the run finished (it is stopping): reconnect.
            await asyncio.sleep(backoff.next_delay())

    async def stream_state(
        self, state_id: str, *, attempt: int | None = None, from_offset: int = 0
    ) -> AsyncIterator[StreamChunk]:
        """Follow what a running node streams (``BaseNode.stream``): its chunks from ``from_offset``, live,
        until the attempt ends; then the iteration ends.

        Follows ``attempt`` (counted from 1 by claims of the state), by default the state's latest, or
        its first while it waits to be claimed; a retried state is a new state with its own stream. A
        dropped connection or a restarting server is reconnected with backoff, resuming after the
        last chunk yielded (``Last-Event-ID``): no chunk is lost or comes twice. Raises
        :class:`NotFoundError` for a state not in this namespace.

        Example::

            async for chunk in sm.stream_state(state_id):
                print(chunk.text, end="", flush=True)
        """
        backoff = Backoff(initial=0.2, maximum=5.0)
        action = f"Following the stream of state {state_id}"
        path = f"/namespace/{quote(self._namespace, safe='')}/state/{quote(state_id, safe='')}/stream"
        following, position = attempt, from_offset
        while True:
            query = {"from": position, **({"attempt": following} if following is not None else {})}
            try:
                async for sse in self._client().stream_events(
                    f"{path}?{urlencode(query)}", read_timeout=_STREAM_SILENCE_S, action=action
                ):
                    if sse.event not in ("chunk", "end"):
                        continue  # an event kind this SDK does not know yet
                    try:
                        event = (StreamChunk if sse.event == "chunk" else StreamEnd).model_validate_json(sse.data)
                    except ValueError as exc:
                        raise UnexpectedAnswerError(200, f"a {sse.event} event does not fit: {exc}", action) from None
                    backoff.reset()
                    following = event.attempt  # a reconnect follows the same attempt
                    if isinstance(event, StreamEnd):
                        return
                    if event.offset < position:
                        continue
                    position = event.offset + 1
                    yield event
            except ApiError as exc:
                if not exc.retryable:
                    raise
                delay = backoff.next_delay()
                logger.debug("%s; reconnecting in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            # The server ended the stream before the attempt ended (it is stopping): reconnect.
            await asyncio.sleep(backoff.next_delay())

    async def wait_for_run(self, run_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until a run has finished and return its summary (see :meth:`get_run`).

        Follows the run's event stream (:meth:`watch_run`), so it returns as soon as the run ends.
        Raises :class:`RunTimeoutError` when ``timeout`` seconds pass first (``None``: wait forever).

        Example::

            run = await sm.trigger("my-graph")
            summary = await sm.wait_for_run(run["run_id"], timeout=120)
            assert summary["status"] == "SUCCESS"
        """
        seen: dict[str, Any] | None = None

        async def until_finished() -> None:
            nonlocal seen
            async for event in self.watch_run(run_id):
                seen = event.summary()

        try:
            await asyncio.wait_for(until_finished(), timeout)
        except TimeoutError:
            raise RunTimeoutError(run_id, timeout or 0.0, seen) from None
        return await self.get_run(run_id)

    # -- Inspecting and acting on a namespace: graphs as documents, runs, states, nodes ----------
    # The `exosphere` command line is built on these (it has no HTTP client of its own). Each
    # returns the server's answer as a mapping, like the methods above.

    async def apply_graph(self, graph_name: str, template: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace a graph template from its JSON form and return the stored graph at once.

        ``template`` holds the upsert body's fields as plain data (``nodes``, ``secrets``,
        ``retry_policy``, ``store_config``, ``triggers``), as a YAML or JSON file would; the server
        checks it. Unlike :meth:`upsert_graph` nothing is built from models and nothing waits: the
        answer carries ``validation_status`` (``VALID`` or ``INVALID`` against the registered nodes),
        ``validation_errors``, ``validation_warnings`` and ``version``. A template the server refuses
        outright raises :class:`ApiError` with ``status_code`` 400 (``detail``: the graph's problems,
        ``"; "``-separated) or 422 (``detail``: the list of malformed fields, each ``{"loc", "msg"}``).

        Example::

            graph = await sm.apply_graph("hello", {
                "secrets": {},
                "nodes": [{"node_name": "Greet", "namespace": "MyProject", "identifier": "greet",
                           "inputs": {"name": "world"}, "next_nodes": []}],
            })
            print(graph["version"], graph["validation_status"])
        """
        graph = await self._client().request_with_retry(
            "PUT",
            self._graph_path(graph_name),
            answer=GraphResponse,
            json=dict(template),
            action=f"Applying graph {graph_name!r}",
            max_attempts=self._attempts,
        )
        return _as_sent(graph)

    async def list_graphs(self) -> dict[str, Any]:
        """The namespace's graph templates: ``{"namespace", "count", "templates": [...]}``.

        Each template has ``name``, ``version``, ``validation_status``, ``validation_errors``,
        ``nodes`` and ``updated_at``; secret values are never sent, only their names.

        Example::

            for graph in (await sm.list_graphs())["templates"]:
                print(graph["name"], graph["validation_status"])
        """
        return await self._read_as_sent(f"{self._namespace_path()}/graphs/", ListGraphsResponse, "Listing graphs")

    async def list_runs(
        self,
        page: int = 1,
        size: int = 20,
        *,
        graph_name: str | None = None,
        status: RunStatus | None = None,
    ) -> dict[str, Any]:
        """A page of the namespace's runs, newest first: ``{"total", "page", "size", "runs": [...]}``.

        ``size`` is 1 to 1000. ``graph_name`` and ``status`` narrow the list; each run has
        ``run_id``, ``graph_name``, ``status``, its state counts and ``created_at``.

        Example::

            page = await sm.list_runs(size=10, status="FAILED")
            print(page["total"], [run["run_id"] for run in page["runs"]])
        """
        query = {key: value for key, value in (("graph_name", graph_name), ("status", status)) if value is not None}
        path = f"{self._namespace_path()}/runs/{page}/{size}" + (f"?{urlencode(query)}" if query else "")
        return await self._read_as_sent(path, ListRunsResponse, "Listing runs")

    async def get_run_progress(self, run_id: str) -> dict[str, Any]:
        """A run's summary (as :meth:`get_run`) plus ``nodes``: per node, how many states are in each status.

        Example::

            progress = await sm.get_run_progress(run_id)
            for node in progress["nodes"]:
                print(node["identifier"], node["counts"])  # e.g. work {'SUCCESS': 3, 'QUEUED': 1}
        """
        return await self._read_as_sent(
            f"{self._run_path(run_id)}/progress", RunProgressResponse, f"Reading progress of run {run_id}"
        )

    async def get_state(self, state_id: str, payloads: bool = False) -> dict[str, Any]:
        """One state: status, inputs, outputs, error, parents, attempts and timings (never secret values).

        Input and output values over the server's inline threshold (64 KiB by default) are left out of
        ``inputs``/``outputs`` and listed by size in ``large_inputs``/``large_outputs``; with
        ``payloads=True`` they are in ``inputs``/``outputs``, whole (see also :meth:`get_state_payload`).

        Example::

            state = await sm.get_state(state_id)
            print(state["identifier"], state["status"], state["error"], state.get("large_outputs"))
        """
        path = self._state_path(state_id) + ("?payloads=true" if payloads else "")
        return await self._read_as_sent(path, StateResponse, f"Reading state {state_id}")

    async def get_state_payload(self, state_id: str, side: Literal["inputs", "outputs"], field: str) -> str:
        """One input or output value of a state, whole, however large (read as plain text).

        Example::

            report = await sm.get_state_payload(state_id, "outputs", "report")
        """
        path = f"{self._state_path(state_id)}/payload/{side}/{quote(field, safe='')}"
        return await self._client().get_text(path, action=f"Reading {side} field {field!r} of state {state_id}")

    async def retry_state(self, state_id: str, fanout_id: str | None = None) -> dict[str, Any]:
        """Run an ``ERRORED`` or ``NEXT_CREATED_ERROR`` state again: a new state with the same inputs.

        Returns ``{"id": <the new state's id>, "status": "CREATED"}``; the old state becomes
        ``RETRY_CREATED``. ``fanout_id`` keys the retry (a fresh one by default), so the same retry is
        never made twice. Raises :class:`ConflictError` when the state cannot be retried (it did not
        fail, or was retried already).

        Example::

            retry = await sm.retry_state(failed["state_id"])
            print(retry["id"])
        """
        result = await self._client().request_with_retry(
            "POST",
            f"{self._state_path(state_id)}/manual-retry",
            answer=ManualRetryResponse,
            json={"fanout_id": fanout_id or str(uuid.uuid4())},
            action=f"Retrying state {state_id}",
            max_attempts=self._attempts,
            # Sent again only when it surely never arrived: a repeat that did arrive answers 409.
            retry_if=lambda error: not error.request_sent,
        )
        return _as_sent(result)

    async def list_nodes(self) -> dict[str, Any]:
        """The nodes runtimes registered in this namespace: ``{"namespace", "count", "nodes": [...]}``.

        Each node has ``name``, ``runtime_name``, its ``inputs_schema`` and ``outputs_schema`` and
        the names of its ``secrets``.

        Example::

            print([node["name"] for node in (await sm.list_nodes())["nodes"]])
        """
        return await self._read_as_sent(
            f"{self._namespace_path()}/nodes/", ListNodesResponse, "Listing registered nodes"
        )

    async def list_namespaces(self) -> dict[str, Any]:
        """Every namespace the server knows (any namespace, not only this one): ``{"namespaces", "count"}``.

        Example::

            print((await sm.list_namespaces())["namespaces"])  # ['MyProject', ...]
        """
        return await self._read_as_sent("/namespaces", NamespacesResponse, "Listing namespaces")

    # -- API keys and the audit log (an admin key for every namespace) ---------------------------

    async def create_key(self, name: str, role: KeyRole, namespace: str | None = None) -> dict[str, Any]:
        """Create an API key with ``role`` (``admin``, ``operator``, ``runtime`` or ``viewer``) for one
        ``namespace``, or every namespace when None. The answer's ``key`` is the secret to hand out:
        the server keeps only its SHA-256, so it is shown this once.

        Example::

            created = await sm.create_key("nightly-runtime", "runtime", namespace="etl")
            print(created["id"], created["key"])
        """
        result = await self._client().request_with_retry(
            "POST",
            "/keys",
            answer=CreatedKeyResponse,
            json={"name": name, "role": role, "namespace": namespace},
            action=f"Creating API key {name!r}",
            max_attempts=self._attempts,
            retry_if=lambda error: not error.request_sent,  # a repeat that arrived would make a second key
        )
        return _as_sent(result)

    async def list_keys(self) -> dict[str, Any]:
        """Every API key, revoked ones too, without their secrets: ``{"keys": [...]}``.

        Example::

            for key in (await sm.list_keys())["keys"]:
                print(key["id"], key["name"], key["role"], key["namespace"], key["revoked_at"])
        """
        return await self._read_as_sent("/keys", ListKeysResponse, "Listing API keys")

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Revoke a key: every replica refuses it from the next request on. Revoking twice is harmless.

        Example::

            revoked = await sm.revoke_key("key_0123456789abcdef")
            print(revoked["revoked_at"])
        """
        result = await self._client().request_with_retry(
            "DELETE",
            f"/keys/{quote(key_id, safe='')}",
            answer=ApiKeyInfo,
            action=f"Revoking API key {key_id}",
            max_attempts=self._attempts,
        )
        return _as_sent(result)

    async def audit_log(self, limit: int = 100, before: int | None = None) -> dict[str, Any]:
        """The newest ``limit`` admin and operator actions (who, what, when, namespace, target), or the
        newest older than entry id ``before``: ``{"entries": [...]}``.

        Example::

            for entry in (await sm.audit_log(limit=20))["entries"]:
                print(entry["at"], entry["key_name"], entry["action"], entry["target"])
        """
        query = urlencode({"limit": limit, **({"before": before} if before is not None else {})})
        return await self._read_as_sent(f"/audit?{query}", AuditLogResponse, "Reading the audit log")

    async def set_limit(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> dict[str, Any]:
        """Create or replace the namespace's limit ``name`` (the budgets given replace all three). Graph
        nodes use it with ``limits: [{"name": name, "tokens": ..., "key": ...}]``; a claim then hands out
        only states whose limits have room, across every runtime and replica.

        Example::

            await sm.set_limit("openai", requests_per_minute=500, tokens_per_minute=90_000)
        """
        body = LimitRequest(
            concurrency=concurrency, requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute
        )
        result = await self._client().request_with_retry(
            "PUT",
            self._limit_path(name),
            answer=LimitResponse,
            json=body.model_dump(),
            action=f"Setting limit {name}",
            max_attempts=self._attempts,
        )
        return _as_sent(result)

    async def get_limit(self, name: str) -> dict[str, Any]:
        """One limit: ``{"name", "concurrency", "requests_per_minute", "tokens_per_minute", "paused_until", ...}``.

        Example::

            print((await sm.get_limit("openai"))["requests_per_minute"])
        """
        return await self._read_as_sent(self._limit_path(name), LimitResponse, f"Reading limit {name}")

    async def list_limits(self) -> dict[str, Any]:
        """The namespace's limits: ``{"namespace", "limits": [...]}``.

        Example::

            for limit in (await sm.list_limits())["limits"]:
                print(limit["name"], limit["requests_per_minute"])
        """
        return await self._read_as_sent(f"{self._namespace_path()}/limits", ListLimitsResponse, "Listing limits")

    async def delete_limit(self, name: str) -> dict[str, Any]:
        """Remove a limit; states of nodes that use it wait until it is defined again.

        Example::

            await sm.delete_limit("openai")
        """
        result = await self._client().request_with_retry(
            "DELETE",
            self._limit_path(name),
            answer=DeleteLimitResponse,
            action=f"Deleting limit {name}",
            max_attempts=self._attempts,
        )
        return _as_sent(result)

    def _limit_path(self, name: str) -> str:
        return f"{self._namespace_path()}/limits/{quote(name, safe='')}"

    def _namespace_path(self) -> str:
        return f"/namespace/{quote(self._namespace, safe='')}"

    def _state_path(self, state_id: str) -> str:
        return f"{self._namespace_path()}/state/{quote(state_id, safe='')}"

    # -- end of the inspection block ------------------------------------------------------------

    async def _read_as_sent(self, path: str, answer: type[BaseModel], action: str) -> dict[str, Any]:
        return _as_sent(await self._read(path, answer, action))

    async def _read(self, path: str, answer: type[M], action: str) -> M:
        return await self._client().request_with_retry(
            "GET", path, answer=answer, action=action, max_attempts=self._attempts
        )

    def _client(self) -> HttpxClient:
        # An httpx client is bound to the event loop it was first used on; callers commonly use a
        # fresh asyncio.run() per call, so keep one pooled client per running loop.
        loop = asyncio.get_running_loop()
        if self._api is None or self._api_loop is not loop:
            base_url = self._base_url()
            try:
                # Each open stream (watch_run, stream_state) holds a connection for as long as it is
                # followed: room for many, opened only as needed.
                self._api = HttpxClient(
                    base_url, self._key or None, timeout=self._timeout, max_connections=_MAX_CONNECTIONS
                )
            except httpx.InvalidURL as exc:
                raise ConfigurationError(
                    [f"state_manager_uri {self._uri!r} is not a valid URL: {exc}"], "StateManager"
                ) from exc
            self._api_loop = loop
        return self._api

    def _base_url(self) -> str:
        if not self._uri:
            raise ConfigurationError(
                ["state_manager_uri is not set: pass it or set EXOSPHERE_STATE_MANAGER_URI"], "StateManager"
            )
        return f"{self._uri.rstrip('/')}/{self._version}"

    def _graph_path(self, graph_name: str) -> str:
        return f"/namespace/{quote(self._namespace, safe='')}/graph/{quote(graph_name, safe='')}"

    def _run_path(self, run_id: str) -> str:
        return f"/namespace/{quote(self._namespace, safe='')}/run/{quote(run_id, safe='')}"


def _as_sent(answer: BaseModel) -> dict[str, Any]:
    """A parsed answer as the mapping the server sent: the same keys (unknown ones too), JSON values."""
    return answer.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _error_messages(detail: Any) -> list[str]:
    """Flatten a server ``detail`` (a string, or pydantic's list of error dicts) into messages."""
    if isinstance(detail, list):
        messages = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                location = ".".join(str(part) for part in item.get("loc", []))
                messages.append(f"{location}: {item['msg']}" if location else str(item["msg"]))
            else:
                messages.append(str(item))
        return messages
    return [str(detail)]
