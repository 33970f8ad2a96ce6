"""Client for managing graphs and runs: upsert a graph, trigger a run, follow it to the end.

Answers are parsed as the models of :mod:`exospherehost.contract` and handed back as plain mappings
with the keys the server sent (``graph["validation_status"]``), as the original SDK returned them.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Self
from urllib.parse import quote

from pydantic import BaseModel

from ._http import ApiClient, Backoff, M
from .contract import GraphResponse, GraphTrigger, RunResponse, RunStatesResponse, TriggerResponse
from .errors import ApiError, ConfigurationError, GraphValidationError, RunTimeoutError
from .models import CronTrigger, GraphNodeModel, GraphValidationStatusEnum, RetryPolicyModel, StoreConfigModel

# Idempotent reads and PUTs are repeated this many times on network errors and 5xx.
_READ_ATTEMPTS = 5
# The longest single long-poll on a run; the server accepts up to 60 s.
_RUN_LONG_POLL_MS = 25_000


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
        result = await self._client().request_with_retry(
            "POST",
            f"{self._graph_path(graph_name)}/trigger",
            answer=TriggerResponse,
            json=body,
            action=f"Triggering graph {graph_name!r}",
            max_attempts=_READ_ATTEMPTS,
            # A trigger creates a run: only resend it when the first one surely never left.
            retry_if=lambda error: not error.request_sent,
        )
        return _as_sent(result)

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
                triggers=[CronTrigger(expression="0 9 * * 1-5", store={"cursor": "0"})],
            )
        """
        body: dict[str, Any] = {"secrets": secrets, "nodes": [node.model_dump(mode="json") for node in graph_nodes]}
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
                max_attempts=_READ_ATTEMPTS,
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
        """Read a run's summary: ``status`` (PENDING, SUCCESS, FAILED), counts and ``finished``.

        Example::

            run = await sm.get_run(run_id)
            print(run["status"], run["success_count"], run["errored_count"])
        """
        return _as_sent(await self._read(self._run_path(run_id), RunResponse, f"Reading run {run_id}"))

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

    async def wait_for_run(self, run_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until a run has finished and return its summary (see :meth:`get_run`).

        Uses the server's long-poll, so it returns as soon as the run ends. Raises
        :class:`RunTimeoutError` when ``timeout`` seconds pass first (``None``: wait forever).

        Example::

            run = await sm.trigger("my-graph")
            summary = await sm.wait_for_run(run["run_id"], timeout=120)
            assert summary["status"] == "SUCCESS"
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        backoff = Backoff()
        run: RunResponse | None = None
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise RunTimeoutError(run_id, timeout or 0.0, None if run is None else _as_sent(run))
            wait_ms = _RUN_LONG_POLL_MS if remaining is None else min(_RUN_LONG_POLL_MS, int(remaining * 1000))
            started = loop.time()
            try:
                run = await self._client().request(
                    "GET",
                    self._run_path(run_id),
                    answer=RunResponse,
                    params={"wait_ms": wait_ms},
                    timeout=wait_ms / 1000 + self._timeout,
                    action=f"Waiting for run {run_id}",
                )
            except ApiError as exc:
                if not exc.retryable:
                    raise
                await asyncio.sleep(_capped(backoff.next_delay(), remaining))
                continue
            backoff.reset()
            if run.finished:
                return _as_sent(run)
            if loop.time() - started < wait_ms / 2000:
                # The server answered at once without waiting (no long-poll): do not spin.
                await asyncio.sleep(_capped(0.5, remaining))

    async def _read(self, path: str, answer: type[M], action: str) -> M:
        return await self._client().request_with_retry(
            "GET", path, answer=answer, action=action, max_attempts=_READ_ATTEMPTS
        )

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


def _as_sent(answer: BaseModel) -> dict[str, Any]:
    """A parsed answer as the mapping the server sent: the same keys (unknown ones too), JSON values."""
    return answer.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _capped(delay: float, remaining: float | None) -> float:
    return delay if remaining is None else max(0.0, min(delay, remaining))


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
