"""Client for managing graphs and runs: upsert a graph, trigger a run, follow it to the end."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, Self
from urllib.parse import quote

from ._http import ApiClient, Backoff
from .errors import ApiError, ConfigurationError, GraphValidationError, NotFoundError, RunTimeoutError
from .models import CronTrigger, GraphNodeModel, RetryPolicyModel, RunEvent, StoreConfigModel

logger = logging.getLogger("exospherehost")

# Idempotent reads and PUTs are repeated this many times on network errors and 5xx.
_READ_ATTEMPTS = 5
# The server sends a keep-alive comment every 15 s: a stream silent for this long is dead.
_STREAM_SILENCE_S = 45.0
_RUN_EVENTS = ("snapshot", "change", "finished")


_STATES_PAGE = 1000  # states per request when reading a run: the server pages them


class StateManager:
    """Talks to the state manager on behalf of one namespace: graphs and runs.

    ``state_manager_uri`` and ``key`` fall back to the environment variables
    ``EXOSPHERE_STATE_MANAGER_URI`` and ``EXOSPHERE_API_KEY``. Errors are raised as
    :mod:`exospherehost.errors` types carrying the server's message.

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
    ) -> None:
        self._namespace = namespace
        self._uri = state_manager_uri or os.environ.get("EXOSPHERE_STATE_MANAGER_URI")
        self._key = key or os.environ.get("EXOSPHERE_API_KEY")
        self._version = state_manager_version
        self._timeout = timeout
        self._api: ApiClient | None = None
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
    ) -> dict[str, Any]:
        """Start a run of ``graph_name``; returns ``{"status": "CREATED", "run_id": ...}``.

        ``inputs`` override the first node's template inputs, ``store`` seeds the run's key/value
        store, and ``start_delay`` (milliseconds) postpones the first node.

        Example::

            run = await sm.trigger("my-graph", inputs={"user_id": "42"}, store={"cursor": "0"})
        """
        body = {"start_delay": start_delay, "inputs": inputs or {}, "store": store or {}}
        result: dict[str, Any] = await self._client().request_with_retry(
            "POST",
            f"{self._graph_path(graph_name)}/trigger",
            json=body,
            action=f"Triggering graph {graph_name!r}",
            max_attempts=_READ_ATTEMPTS,
            # A trigger creates a run: only resend it when the first one surely never left.
            retry_if=lambda error: not error.request_sent,
        )
        return result

    async def get_graph(self, graph_name: str) -> dict[str, Any]:
        """Read a graph template, including ``validation_status`` and ``validation_errors``.

        Example::

            graph = await sm.get_graph("my-graph")
            print(graph["validation_status"])  # VALID
        """
        return await self._read(self._graph_path(graph_name), f"Reading graph {graph_name!r}")

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
    ) -> dict[str, Any]:
        """Create or replace a graph template and wait until the server has validated it.

        Returns the validated graph. Raises :class:`GraphValidationError` (with the server's
        errors) when the graph is invalid or still pending after ``validation_timeout`` seconds.

        Example::

            graph = await sm.upsert_graph(
                "my-graph",
                [GraphNodeModel(node_name="Greet", namespace="MyProject", identifier="greet",
                                inputs={"name": "world"}, next_nodes=[])],
                secrets={},
                triggers=[CronTrigger(expression="0 9 * * 1-5")],
            )
        """
        body: dict[str, Any] = {"secrets": secrets, "nodes": [node.model_dump(mode="json") for node in graph_nodes]}
        if retry_policy is not None:
            body["retry_policy"] = retry_policy.model_dump(mode="json")
        if store_config is not None:
            body["store_config"] = store_config.model_dump(mode="json")
        if triggers is not None:
            body["triggers"] = [{"type": "CRON", "value": {"expression": t.expression}} for t in triggers]
        try:
            graph: dict[str, Any] = await self._client().request_with_retry(
                "PUT",
                self._graph_path(graph_name),
                json=body,
                action=f"Upserting graph {graph_name!r}",
                max_attempts=_READ_ATTEMPTS,
            )
        except ApiError as exc:
            if exc.status_code in (400, 422):
                raise GraphValidationError(graph_name, "INVALID", _error_messages(exc.detail)) from exc
            raise
        return await self._await_validation(graph_name, graph, validation_timeout, polling_interval)

    async def _await_validation(
        self, graph_name: str, graph: dict[str, Any], validation_timeout: float, polling_interval: float
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + validation_timeout
        # Only PENDING means "still validating"; any other status is final.
        while graph.get("validation_status") == "PENDING":
            if loop.time() >= deadline:
                message = f"validation did not finish within {validation_timeout:g} s"
                raise GraphValidationError(graph_name, "PENDING", [message])
            await asyncio.sleep(polling_interval)
            graph = await self.get_graph(graph_name)
        status = str(graph.get("validation_status"))
        if status != "VALID":
            raise GraphValidationError(graph_name, status, _error_messages(graph.get("validation_errors") or []))
        return graph

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """Read a run's summary: ``status`` (PENDING, SUCCESS, FAILED), counts and ``finished``.

        Example::

            run = await sm.get_run(run_id)
            print(run["status"], run["success_count"], run["errored_count"])
        """
        return await self._read(self._run_path(run_id), f"Reading run {run_id}")

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
                f"{self._run_path(run_id)}/states?page={page}&size={_STATES_PAGE}", f"Reading states of run {run_id}"
            )
            found: list[dict[str, Any]] = body.get("states", [])
            states += found
            # Servers before pagination send every state at once, without `total`.
            if "total" not in body or len(found) < _STATES_PAGE or len(states) >= int(body["total"]):
                return states
            page += 1

    async def watch_run(self, run_id: str) -> AsyncIterator[RunEvent]:
        """Follow a run live: its progress now, then after each change, until it has finished.

        Yields :class:`~exospherehost.models.RunEvent` items (status, counts, per-node counts by
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
                    event = RunEvent.model_validate({**json.loads(sse.data), "event": sse.event})
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

    async def _read(self, path: str, action: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._client().request_with_retry(
            "GET", path, action=action, max_attempts=_READ_ATTEMPTS
        )
        return result

    def _client(self) -> ApiClient:
        # An httpx client is bound to the event loop it was first used on; callers commonly use a
        # fresh asyncio.run() per call, so keep one pooled client per running loop.
        loop = asyncio.get_running_loop()
        if self._api is None or self._api_loop is not loop:
            self._api = ApiClient(self._base_url(), self._require_key(), timeout=self._timeout)
            self._api_loop = loop
        return self._api

    def _base_url(self) -> str:
        if not self._uri:
            raise ConfigurationError(
                ["state_manager_uri is not set: pass it or set EXOSPHERE_STATE_MANAGER_URI"], "StateManager"
            )
        return f"{self._uri.rstrip('/')}/{self._version}"

    def _require_key(self) -> str:
        if not self._key:
            raise ConfigurationError(["key is not set: pass it or set EXOSPHERE_API_KEY"], "StateManager")
        return self._key

    def _graph_path(self, graph_name: str) -> str:
        return f"/namespace/{quote(self._namespace, safe='')}/graph/{quote(graph_name, safe='')}"

    def _run_path(self, run_id: str) -> str:
        return f"/namespace/{quote(self._namespace, safe='')}/run/{quote(run_id, safe='')}"


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
