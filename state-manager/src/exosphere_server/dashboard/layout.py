"""Draw a graph template: layers by topological depth, left to right, with edge paths for SVG.

Templates are DAGs, so each node's layer is its longest distance from a root; inside a layer nodes
are ordered by the mean position of their predecessors (one barycentre sweep keeps crossings low
without a layout engine). Everything is computed here, once per page, so the browser only colours.

Example::

    drawn = layout_template([{"identifier": "a", "node_name": "A", "next_nodes": ["b"]},
                             {"identifier": "b", "node_name": "B"}])
    [(n.identifier, n.depth) for n in drawn.nodes]   # [('a', 0), ('b', 1)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NODE_WIDTH = 210
NODE_HEIGHT = 78
GAP_X = 90
GAP_Y = 34
MARGIN = 20
UNITES_ROOM = 40


@dataclass(frozen=True)
class PlacedNode:
    identifier: str
    node_name: str
    namespace: str
    depth: int
    x: int
    y: int
    unites: str | None


@dataclass(frozen=True)
class DrawnEdge:
    source: str
    target: str
    kind: str  # "next" (next_nodes) or "unites" (waits for everything under `source`)
    path: str


@dataclass(frozen=True)
class GraphLayout:
    nodes: list[PlacedNode]
    edges: list[DrawnEdge]
    width: int
    height: int


def _depths(ids: list[str], successors: Mapping[str, list[str]]) -> dict[str, int]:
    """Longest path from a root, by Kahn's algorithm; nodes on a cycle (never stored) go last."""
    indegree = dict.fromkeys(ids, 0)
    for source in ids:
        for target in successors[source]:
            indegree[target] += 1
    depth = dict.fromkeys(ids, 0)
    ready = [i for i in ids if indegree[i] == 0]
    seen: set[str] = set()
    while ready:
        current = ready.pop(0)
        seen.add(current)
        for target in successors[current]:
            depth[target] = max(depth[target], depth[current] + 1)
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    deepest = max(depth.values(), default=0)
    for leftover in ids:
        if leftover not in seen:
            depth[leftover] = deepest + 1
    return depth


def layout_template(nodes: Sequence[Mapping[str, Any]]) -> GraphLayout:
    """Place the template's nodes (dicts as stored: identifier, node_name, next_nodes, unites)."""
    by_id = {str(n["identifier"]): n for n in nodes}
    ids = list(by_id)
    successors = {i: [str(t) for t in (by_id[i].get("next_nodes") or []) if str(t) in by_id] for i in ids}
    depth = _depths(ids, successors)
    predecessors: dict[str, list[str]] = {i: [] for i in ids}
    for source in ids:
        for target in successors[source]:
            predecessors[target].append(source)

    layers: dict[int, list[str]] = {}
    for identifier in ids:
        layers.setdefault(depth[identifier], []).append(identifier)
    order: dict[str, float] = {}
    for level in sorted(layers):
        members = layers[level]
        first_seen = {identifier: index for index, identifier in enumerate(members)}

        def barycentre(identifier: str, first_seen: dict[str, int] = first_seen) -> tuple[float, int]:
            placed = [order[p] for p in predecessors[identifier] if p in order]
            mean = sum(placed) / len(placed) if placed else float(first_seen[identifier])
            return mean, first_seen[identifier]

        members.sort(key=barycentre)
        for index, identifier in enumerate(members):
            order[identifier] = float(index)

    tallest = max((len(m) for m in layers.values()), default=1)
    height = 2 * MARGIN + tallest * NODE_HEIGHT + (tallest - 1) * GAP_Y
    width = 2 * MARGIN + (max(layers, default=0) + 1) * (NODE_WIDTH + GAP_X) - GAP_X
    placed: dict[str, PlacedNode] = {}
    for level, members in sorted(layers.items()):
        column = len(members) * NODE_HEIGHT + (len(members) - 1) * GAP_Y
        top = (height - column) // 2
        for index, identifier in enumerate(members):
            node = by_id[identifier]
            unites = node.get("unites") or None
            placed[identifier] = PlacedNode(
                identifier=identifier,
                node_name=str(node.get("node_name", "")),
                namespace=str(node.get("namespace", "")),
                depth=level,
                x=MARGIN + level * (NODE_WIDTH + GAP_X),
                y=top + index * (NODE_HEIGHT + GAP_Y),
                unites=str(unites["identifier"]) if isinstance(unites, Mapping) and "identifier" in unites else None,
            )

    edges = [
        DrawnEdge(source, target, "next", _curve(placed[source], placed[target]))
        for source in ids
        for target in successors[source]
    ]
    edges += [
        DrawnEdge(n.unites, n.identifier, "unites", _curve(placed[n.unites], placed[n.identifier], bend=True))
        for n in placed.values()
        if n.unites in placed
    ]
    if any(e.kind == "unites" for e in edges):
        height += UNITES_ROOM  # unites curves dip below the boxes
    return GraphLayout([placed[i] for i in ids], edges, width, height)


def _curve(source: PlacedNode, target: PlacedNode, *, bend: bool = False) -> str:
    """A cubic Bézier from the source's right side to the target's left side (below it for unites)."""
    x1, y1 = source.x + NODE_WIDTH, source.y + NODE_HEIGHT // 2
    x2, y2 = target.x, target.y + NODE_HEIGHT // 2
    if bend:  # unites: leave from the bottom, so it does not hide a next_nodes edge between the same pair
        x1, y1 = source.x + NODE_WIDTH // 2, source.y + NODE_HEIGHT
        return f"M{x1},{y1} C{x1},{y1 + 60} {x2 - 60},{y2 + 40} {x2},{y2 + 10}"
    reach = max(30, (x2 - x1) // 2)
    return f"M{x1},{y1} C{x1 + reach},{y1} {x2 - reach},{y2} {x2},{y2}"
