"""Upsert checks of the nodes that name a graph (child graphs), which need the stored graphs.

A node that names a graph must name one of its own namespace that exists, give every input of that
graph's first node and no other, and no graph may reach itself through child graphs (its runs would
start runs of themselves for ever). Each problem is one message naming the node and what to change.

Example::

    await child_graph_errors(tx, "demo", "parent", shape)
    # ["Node 'sum' names graph 'summarise', which does not exist in namespace demo: upsert it first"]
"""

from __future__ import annotations

from exospherehost.models import GraphNodeModel

from exosphere_server.engine.graph_shape import GraphShape
from exosphere_server.storage.base import Tx
from exosphere_server.storage.records import GraphRecord


async def child_graph_errors(tx: Tx, namespace: str, graph_name: str, shape: GraphShape) -> list[str]:
    """Every problem of the graph's nodes that name a graph, checked against the stored graphs."""
    errors: list[str] = []
    named = {ident: node for ident, node in shape.nodes.items() if node.graph_name is not None}
    for ident, node in named.items():
        assert node.graph_name is not None
        if node.timeout_seconds is not None:
            errors.append(
                f"Node '{ident}' names graph '{node.graph_name}': timeout_seconds does not apply to it (no runtime "
                "runs it); give that graph's nodes their own timeout_seconds, or the graph a deadline_seconds"
            )
        if node.namespace != namespace:
            errors.append(
                f"Node '{ident}' names graph '{node.graph_name}' in namespace {node.namespace}: a child graph "
                f"must be in the graph's own namespace ({namespace})"
            )
            continue
        if node.graph_name == graph_name:
            errors.append(
                f"Node '{ident}' names graph '{graph_name}' itself: a graph cannot reach itself through children"
            )
            continue
        child = await tx.get_graph(namespace, node.graph_name)
        if child is None:
            errors.append(
                f"Node '{ident}' names graph '{node.graph_name}', which does not exist in namespace {namespace}: "
                "upsert it first"
            )
            continue
        errors.extend(_input_errors(ident, node, child))
    if not errors and named:
        cycle = await _path_back(
            tx, namespace, graph_name, {node.graph_name for node in named.values() if node.graph_name}
        )
        if cycle is not None:
            errors.append(
                f"Graph '{graph_name}' reaches itself through child graphs ({' -> '.join([graph_name, *cycle])}): "
                "a graph cannot run itself as a child, directly or not"
            )
    return errors


def _input_errors(ident: str, node: GraphNodeModel, child: GraphRecord) -> list[str]:
    """The node's inputs must be exactly the inputs of the child graph's first node."""
    nodes = [GraphNodeModel.model_validate(n) for n in child.nodes]
    targets = {name for n in nodes for name in (n.next_nodes or [])}
    roots = [n for n in nodes if n.identifier not in targets and n.unites is None]
    if len(roots) != 1:
        return [f"Node '{ident}' names graph '{child.name}', which has no single first node: fix that graph first"]
    expected, given = set(roots[0].inputs), set(node.inputs)
    errors = []
    missing = sorted(expected - given)
    if missing:
        errors.append(
            f"Node '{ident}' does not give input(s) {', '.join(repr(m) for m in missing)} of the first node "
            f"'{roots[0].identifier}' of graph '{child.name}'"
        )
    unknown = sorted(given - expected)
    if unknown:
        errors.append(
            f"Node '{ident}' gives input(s) {', '.join(repr(u) for u in unknown)} that the first node "
            f"'{roots[0].identifier}' of graph '{child.name}' does not have (its inputs: "
            f"{', '.join(repr(e) for e in sorted(expected)) or 'none'})"
        )
    return errors


async def _path_back(tx: Tx, namespace: str, graph_name: str, children: set[str]) -> list[str] | None:
    """A chain of child graphs from `children` back to `graph_name`, through the stored graphs; None if none."""
    came_from: dict[str, str | None] = dict.fromkeys(sorted(children))
    frontier = sorted(children)
    while frontier:
        following: list[str] = []
        for record in await tx.get_graphs([(namespace, name) for name in frontier]):
            for raw in record.nodes:
                child = raw.get("graph_name")
                if child == graph_name:
                    path = [record.name]
                    while (previous := came_from[path[0]]) is not None:
                        path.insert(0, previous)
                    return [*path, graph_name]
                if isinstance(child, str) and child not in came_from:
                    came_from[child] = record.name
                    following.append(child)
        frontier = following
    return None
