"""Named limits of a namespace, what a graph node's states are charged to, and the provider's 429.

A limit (`PUT /v0/namespace/{ns}/limits/{name}`) caps how many states are claimed at once and how many
requests and tokens are handed out per minute, across every runtime and replica. A graph node lists the
limits its states use (`limits: [{name, tokens, key}]`) and may cap itself (`concurrency`). Each state's
charges are resolved from its placeholders when it is created; the claim checks them
(`storage/limit_buckets.py`). A node whose provider still answers 429 raises `RateLimitedSignal`: the
state runs again later without using a retry, and the limit hands out nothing until then.

Example::

    await set_limit(ctx, "demo", "openai", LimitRequest(requests_per_minute=500, tokens_per_minute=90_000))
    await rate_limited(ctx, "demo", state_id, "openai", key=None, delay_ms=2_000, lease_id=lease)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from exospherehost.contract import LimitRequest
from exospherehost.statuses import StateStatus

from exosphere_server.clock import now_ms
from exosphere_server.engine.context import EngineContext, PinnedGraph
from exosphere_server.engine.errors import LeaseLost, NotFound
from exosphere_server.storage.base import Tx
from exosphere_server.storage.limit_buckets import node_bucket_name
from exosphere_server.storage.records import LimitRecord, StateRecord


def has_limits(graph_node: Any) -> bool:
    return bool(graph_node.limits) or graph_node.concurrency is not None


def node_charges(
    graph: PinnedGraph, identifier: str, resolve: Callable[[str], str], fail: Callable[[str], Exception]
) -> list[dict[str, Any]] | None:
    """The limit buckets a new state of the node is charged to at claim, its placeholders resolved by
    `resolve` (as its inputs are); `fail(message)` is raised for a token estimate that is no integer."""
    node = graph.shape.nodes[identifier]
    if not has_limits(node):
        return None
    charges: list[dict[str, Any]] = []
    for use in node.limits:
        text = resolve(use.tokens).strip()
        try:
            tokens = int(text)
        except ValueError:
            tokens = -1
        if tokens < 0:
            raise fail(f"Limit '{use.name}' of node '{identifier}': tokens must be a whole number >= 0, got {text!r}")
        key = resolve(use.key) if use.key is not None else ""
        charges.append({"name": use.name, "key": key, "tokens": tokens})
    if node.concurrency is not None:
        name = node_bucket_name(graph.name, identifier)
        charges.append({"name": name, "key": "", "tokens": 0, "concurrency": node.concurrency})
    return charges


def limited_node_refs(nodes: Sequence[Any]) -> list[tuple[str, str]]:
    """(namespace, node name) of the graph nodes with limits: claims of those look for limited states."""
    return [(node.namespace, node.node_name) for node in nodes if has_limits(node)]


# -- the routes' operations ------------------------------------------------------------------------


async def set_limit(ctx: EngineContext, namespace: str, name: str, body: LimitRequest) -> LimitRecord:
    now = now_ms()
    async with ctx.storage.transaction() as tx:
        existing = await tx.get_limit(namespace, name)
        record = LimitRecord(
            namespace=namespace,
            name=name,
            concurrency=body.concurrency,
            requests_per_minute=body.requests_per_minute,
            tokens_per_minute=body.tokens_per_minute,
            paused_until=existing.paused_until if existing else 0,
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        await tx.put_limit(record)
    return record


async def get_limit(ctx: EngineContext, namespace: str, name: str) -> LimitRecord:
    async with ctx.storage.reader() as tx:
        found = await tx.get_limit(namespace, name)
    if found is None:
        raise NotFound(f"Limit '{name}' not found in namespace '{namespace}'")
    return found


async def list_limits(ctx: EngineContext, namespace: str) -> list[LimitRecord]:
    async with ctx.storage.reader() as tx:
        return await tx.list_limits(namespace)


async def delete_limit(ctx: EngineContext, namespace: str, name: str) -> None:
    """Remove a limit: states that use it then wait until it is defined again."""
    async with ctx.storage.transaction() as tx:
        if not await tx.delete_limit(namespace, name):
            raise NotFound(f"Limit '{name}' not found in namespace '{namespace}'")


async def rate_limited(
    ctx: EngineContext, namespace: str, state_id: str, limit: str, key: str | None, delay_ms: int, lease_id: str | None
) -> int:
    """The node's provider said 429: run the state again after `delay_ms` without using a retry, and pause
    the limit (one key's bucket, or all of them) for everybody until then. Returns when it runs again."""
    async with ctx.storage.transaction() as tx:
        state = await tx.get_state(state_id, for_update=True)
        if state is None or state.namespace != namespace:
            raise NotFound("State not found")
        if state.status != StateStatus.QUEUED or (lease_id is not None and lease_id != state.lease_id):
            if state.status == StateStatus.CREATED and state.lease_id is None and state.enqueue_after > now_ms():
                return state.enqueue_after  # the same signal again (its answer was lost): already applied
            raise LeaseLost(f"Lease lost: state {state_id} is {state.status} and no longer held under this lease")
        until = now_ms() + delay_ms
        await tx.pause_limit(namespace, limit, key, until)
        await tx.requeue_state(state, until, lease_id=None, lease_expires_at=None, started_at=None)
    return until


async def correct_by_usage(tx: Tx, state: StateRecord, usage: Mapping[str, Any] | None) -> None:
    """Charge the difference between the tokens an attempt reported using (input plus output) and the
    estimate charged at its claim to its buckets: more than estimated leaves the bucket owing, less
    gives the rest back. Nothing without limits or without reported tokens."""
    if not state.limits or not usage:
        return
    reported = [usage.get("input_tokens"), usage.get("output_tokens")]
    if all(value is None for value in reported):
        return
    used = sum(int(value) for value in reported if value is not None)
    corrections = [
        ((str(c["name"]), str(c.get("key") or "")), float(used - int(c.get("tokens") or 0)))
        for c in state.limits
        if c.get("concurrency") is None
    ]
    await tx.correct_limit_tokens(state.namespace, corrections)
