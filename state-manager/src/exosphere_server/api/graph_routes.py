"""Graph templates and node registration (PROTOCOL §4.2–4.4, §4.13–4.15)."""

from __future__ import annotations

import asyncio

from exospherehost.contract import (
    GraphResponse,
    ListGraphsResponse,
    ListNodesResponse,
    NamespacesResponse,
    RegisterNodesResponse,
)
from exospherehost.models import GraphNodeModel
from fastapi import APIRouter, Request
from starlette.responses import Response

from exosphere_server.api.deps import engine_context
from exosphere_server.api.gc_pause import cycle_collector_paused
from exosphere_server.api.json_response import SafeJSONResponse
from exosphere_server.api.off_loop import documented_body, json_answer, parse_json, validate_in_chunks
from exosphere_server.api.schemas import RegisterNodesRequest, UpsertGraphRequest
from exosphere_server.api.views import graph_list_item, graph_view, registered_node_view
from exosphere_server.engine import graphs
from exosphere_server.release import release_gradually

router = APIRouter()


@router.put(
    "/namespace/{namespace_name}/graph/{graph_name}",
    status_code=201,
    response_model=GraphResponse,
    openapi_extra=documented_body(UpsertGraphRequest),
)
async def upsert_graph(namespace_name: str, graph_name: str, request: Request) -> Response:
    # The body is read raw and parsed in a worker thread (see api/off_loop.py): it can be megabytes.
    ctx = engine_context(request)
    raw = await request.body()
    with cycle_collector_paused(len(raw)):
        data = await asyncio.to_thread(parse_json, raw)
        if isinstance(data, dict) and isinstance(data.get("nodes"), list):
            graphs.ensure_graph_size(ctx, len(data["nodes"]))  # before the costly validation
        body = await asyncio.to_thread(validate_in_chunks, data, UpsertGraphRequest, "nodes", GraphNodeModel)
        record = await graphs.upsert_graph(
            ctx,
            namespace_name,
            graph_name.strip(),
            nodes=body.nodes,
            secrets=body.secrets,
            retry_policy=body.retry_policy,
            store_config=body.store_config,
            triggers=[t.model_dump(mode="json") for t in body.triggers],
            timeout_seconds=body.timeout_seconds,
            deadline_seconds=body.deadline_seconds,
            priority=body.priority,
            budget=None if body.budget is None else body.budget.model_dump(exclude_none=True),
        )
        answer = await json_answer(graph_view(record), status_code=201)
        # Freed here, gradually and off the loop, rather than all at once when the handler returns.
        await asyncio.to_thread(release_gradually, data, body.nodes, record.nodes)
    return answer


@router.get("/namespace/{namespace_name}/graph/{graph_name}", response_model=GraphResponse)
async def get_graph(namespace_name: str, graph_name: str, request: Request) -> Response:
    return await json_answer(
        graph_view(await graphs.get_graph(engine_context(request), namespace_name, graph_name.strip()))
    )


@router.get("/namespace/{namespace_name}/graphs/", response_model=ListGraphsResponse)
async def list_graphs(namespace_name: str, request: Request) -> Response:
    templates = await graphs.list_graphs(engine_context(request), namespace_name)
    return SafeJSONResponse(
        {"namespace": namespace_name, "count": len(templates), "templates": [graph_list_item(g) for g in templates]}
    )


@router.put("/namespace/{namespace_name}/nodes/", response_model=RegisterNodesResponse)
async def register_nodes(namespace_name: str, body: RegisterNodesRequest, request: Request) -> Response:
    nodes = [n.model_dump() for n in body.nodes]
    await graphs.register_nodes(engine_context(request), namespace_name, body.runtime_name, nodes)
    return SafeJSONResponse({"runtime_name": body.runtime_name, "registered_nodes": nodes})


@router.get("/namespace/{namespace_name}/nodes/", response_model=ListNodesResponse)
async def list_nodes(namespace_name: str, request: Request) -> Response:
    nodes = await graphs.list_registered_nodes(engine_context(request), namespace_name)
    return SafeJSONResponse(
        {"namespace": namespace_name, "count": len(nodes), "nodes": [registered_node_view(n) for n in nodes]}
    )


@router.get("/namespaces", response_model=NamespacesResponse)
async def list_namespaces(request: Request) -> Response:
    names = await graphs.list_namespaces(engine_context(request))
    return SafeJSONResponse({"namespaces": names, "count": len(names)})
