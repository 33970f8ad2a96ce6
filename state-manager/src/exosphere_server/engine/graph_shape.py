"""Structural validation of a graph template (PROTOCOL §4.2 step 3, §5.1), with D9–D11 fixed.

Everything here needs only the template itself, so it runs synchronously at upsert and a bad
graph is refused with every problem listed at once. Checks that need registered nodes live in
:mod:`.node_checks`.

The ancestor sets computed here are the promise the engine keeps at run time: a state's
``parents`` map (PROTOCOL §5.2) holds at least ``ancestors[identifier]``, whichever path created
it. That is why a join without ``unites`` only gets the ancestors common to *every* incoming path
(D11), why a unite node's ancestors come from its target (its state's lineage is the target's), and
why a unite node's children do see the unite node (D10).

Every step is linear in nodes and edges, or n log n: a graph of 100,000 nodes is one request, and
the sets are kept as one tree (:class:`.lineage.LineageTree`), never as one set per node.

Example::

    shape = analyse_graph(nodes, StoreConfigModel(), secrets={})
    shape.root                 # 'load'
    shape.ancestors["sum"]     # frozenset({'load', 'split'})
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exospherehost.models import GraphNodeModel, StoreConfigModel

from .carried_outputs import Carried, carried_fields
from .lineage import LineageTree
from .placeholders import OutputRef, PlaceholderError, StoreRef, parse_template


class GraphStructureError(ValueError):
    """The template's shape is invalid; ``errors`` lists every problem, each naming a node and field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class GraphShape:
    """The derived structure of a valid template: its root, nodes by identifier, ancestor sets and unite nodes."""

    root: str
    nodes: dict[str, GraphNodeModel]
    ancestors: LineageTree
    unite_nodes: tuple[str, ...]
    # Identifiers some unite node targets: the only ancestors a state's `parents` row keeps besides its
    # direct parent, since a unite finds "everything descending from that state" through them.
    unite_targets: frozenset[str]
    # What each node's states carry for placeholders further on (:mod:`.carried_outputs`).
    carried: Carried


def analyse_graph(
    nodes: list[GraphNodeModel], store_config: StoreConfigModel, secrets: Mapping[str, str]
) -> GraphShape:
    """Validate the template's structure and derive its shape; raise :class:`GraphStructureError` listing all problems.

    Example::

        analyse_graph([GraphNodeModel(node_name="A", namespace="n", identifier="a")],
                      StoreConfigModel(), {}).root  # 'a'
    """
    errors: list[str] = []
    if not nodes:
        raise GraphStructureError(["The graph has no nodes"])
    by_id = _index_nodes(nodes, errors)
    successors = _existing_successors(by_id, errors)
    _check_unites_targets(by_id, errors)
    predecessors = _predecessors(successors)
    roots = _find_roots(by_id, predecessors, errors)
    order = _topological_order(by_id, successors, predecessors)
    if len(order) < len(by_id):
        _report_cycles(by_id, successors, errors)
    reachable = _reachable(roots, successors)
    if roots:
        errors.extend(
            f"Node '{ident}' is not reachable from the root node"
            for ident in by_id
            if ident not in reachable and predecessors[ident]  # a node without any was reported as a root problem
        )
    ancestors = _ancestor_sets(order, by_id, predecessors, reachable, errors)
    _check_placeholders(by_id, ancestors, set(roots), store_config, errors)
    if roots and by_id[roots[0]].graph_name is not None:
        errors.append(f"The first node '{roots[0]}' cannot name a graph: a run starts with a node class")
    if any(not name.strip() for name in secrets):
        errors.append("Secret names cannot be empty")
    if errors:
        raise GraphStructureError(errors)
    return GraphShape(
        root=roots[0],
        nodes=by_id,
        ancestors=ancestors,
        unite_nodes=tuple(ident for ident, node in by_id.items() if node.unites is not None),
        unite_targets=frozenset(node.unites.identifier for node in by_id.values() if node.unites is not None),
        carried=carried_fields(successors, _output_reads(by_id)),
    )


def _placeholder_fields(node: GraphNodeModel) -> dict[str, str]:
    """Every field of a node that may hold placeholders, by the name an error message gives it: its
    inputs, and its limits' token estimates and keys."""
    fields = {f"Input '{name}'": value for name, value in node.inputs.items()}
    for use in node.limits:
        fields[f"Tokens of limit '{use.name}'"] = use.tokens
        if use.key is not None:
            fields[f"Key of limit '{use.name}'"] = use.key
    return fields


def _output_reads(by_id: dict[str, GraphNodeModel]) -> dict[str, set[tuple[str, str]]]:
    """The (identifier, field) pairs each node's placeholders read (the templates parsed cleanly)."""
    return {
        ident: {
            (ref.identifier, ref.field)
            for value in _placeholder_fields(node).values()
            for ref in parse_template(value).refs
            if isinstance(ref, OutputRef)
        }
        for ident, node in by_id.items()
    }


def _index_nodes(nodes: list[GraphNodeModel], errors: list[str]) -> dict[str, GraphNodeModel]:
    by_id: dict[str, GraphNodeModel] = {}
    for node in nodes:
        if node.identifier in by_id:
            errors.append(f"Node identifier '{node.identifier}' is not unique")
        else:
            by_id[node.identifier] = node
    return by_id


def _existing_successors(by_id: dict[str, GraphNodeModel], errors: list[str]) -> dict[str, tuple[str, ...]]:
    successors: dict[str, tuple[str, ...]] = {}
    for ident, node in by_id.items():
        targets = node.next_nodes or []
        for target in targets:
            if target not in by_id:
                errors.append(f"Node '{ident}': next_nodes entry '{target}' does not exist in the graph")
        # Each edge once: Kahn's count of waiting predecessors is per distinct predecessor.
        successors[ident] = tuple(dict.fromkeys(target for target in targets if target in by_id))
    return successors


def _predecessors(successors: dict[str, tuple[str, ...]]) -> dict[str, frozenset[str]]:
    found: dict[str, list[str]] = {ident: [] for ident in successors}
    for ident, targets in successors.items():
        for target in targets:
            found[target].append(ident)
    return {ident: frozenset(preds) for ident, preds in found.items()}


def _check_unites_targets(by_id: dict[str, GraphNodeModel], errors: list[str]) -> None:
    for ident, node in by_id.items():
        if node.unites is None:
            continue
        if node.unites.identifier == ident:
            errors.append(f"Node '{ident}': unites.identifier cannot be the node itself")
        elif node.unites.identifier not in by_id:
            errors.append(f"Node '{ident}': unites.identifier '{node.unites.identifier}' does not exist in the graph")


def _find_roots(
    by_id: dict[str, GraphNodeModel], predecessors: dict[str, frozenset[str]], errors: list[str]
) -> list[str]:
    # A unite node is started by its predecessors finishing, never by a trigger, so it is no root
    # candidate; without an incoming edge it can never run, which deserves its own message.
    roots: list[str] = []
    for ident, node in by_id.items():
        if predecessors[ident]:
            continue
        if node.unites is not None:
            errors.append(f"Node '{ident}' has unites but no node lists it in next_nodes, so it never runs")
        else:
            roots.append(ident)
    if len(roots) != 1:
        names = ", ".join(f"'{ident}'" for ident in roots)
        errors.append(
            f"There should be exactly one root node in the graph but found {len(roots)} nodes with zero in-degree"
            + (f": {names}" if names else "")
        )
    return roots


def _topological_order(
    by_id: dict[str, GraphNodeModel], successors: dict[str, tuple[str, ...]], predecessors: dict[str, frozenset[str]]
) -> list[str]:
    """Kahn's algorithm, ties broken by position in the template; nodes on or behind a cycle are left out."""
    position = {ident: index for index, ident in enumerate(by_id)}
    waiting = {ident: len(preds) for ident, preds in predecessors.items()}
    ready = [position[ident] for ident, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    names = list(by_id)
    order: list[str] = []
    while ready:
        ident = names[heapq.heappop(ready)]
        order.append(ident)
        for child in successors[ident]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, position[child])
    return order


def _report_cycles(by_id: dict[str, GraphNodeModel], successors: dict[str, tuple[str, ...]], errors: list[str]) -> None:
    position = {ident: index for index, ident in enumerate(by_id)}
    for component in _strongly_connected(by_id, successors):
        if len(component) > 1:
            members = ", ".join(f"'{ident}'" for ident in sorted(component, key=position.__getitem__))
            errors.append(f"Nodes {members} form a cycle through next_nodes")
        elif component[0] in successors[component[0]]:
            errors.append(f"Node '{component[0]}' lists itself in next_nodes (a cycle)")


def _strongly_connected(nodes: Iterable[str], successors: Mapping[str, tuple[str, ...]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so that long chains cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for start in nodes:
        if start in index:
            continue
        visit(start)
        work = [(start, iter(successors[start]))]
        while work:
            node, children = work[-1]
            descended = False
            for child in children:
                if child not in index:
                    visit(child)
                    work.append((child, iter(successors[child])))
                    descended = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _reachable(roots: list[str], successors: dict[str, tuple[str, ...]]) -> set[str]:
    seen = set(roots)
    pending = list(roots)
    while pending:
        for child in successors[pending.pop()]:
            if child not in seen:
                seen.add(child)
                pending.append(child)
    return seen


def _ancestor_sets(
    order: list[str],
    by_id: dict[str, GraphNodeModel],
    predecessors: dict[str, frozenset[str]],
    reachable: set[str],
    errors: list[str],
) -> LineageTree:
    """Ancestors of every reachable, acyclic node; also reports unite targets that lineage cannot supply (D9).

    A node's ancestors are the intersection of ``ancestors[p] | {p}`` over its predecessors ``p``:
    in the tree that is the path above the predecessors' lowest common ancestor. Unreachable
    predecessors are ignored so that one defect does not cascade into spurious placeholder errors
    further down.
    """
    tree = LineageTree()
    for ident in order:
        if ident not in reachable:
            continue
        lineages = sorted(p for p in predecessors[ident] if p in tree)
        unites = by_id[ident].unites
        if unites is not None and unites.identifier in by_id and unites.identifier != ident and lineages:
            target = unites.identifier
            missing = [p for p in lineages if p != target and not tree.is_ancestor(target, p)]
            errors.extend(
                f"Node '{ident}' unites '{target}' but '{target}' is not an ancestor of its predecessor '{p}'"
                for p in missing
            )
            if not missing:
                # The unite state's lineage is its target state's lineage plus the target (PROTOCOL §5.2).
                tree.add(ident, target)
                continue
        tree.add(ident, tree.common_ancestor(lineages))
    return tree


def _check_placeholders(
    by_id: dict[str, GraphNodeModel],
    ancestors: LineageTree,
    roots: set[str],
    store_config: StoreConfigModel,
    errors: list[str],
) -> None:
    declared_keys = set(store_config.required_keys) | set(store_config.default_values)
    for ident, node in by_id.items():
        for field, value in _placeholder_fields(node).items():
            try:
                template = parse_template(value)
            except PlaceholderError as exc:
                errors.append(f"{field} of node '{ident}' is invalid: {exc}")
                continue
            for ref in dict.fromkeys(template.refs):
                problem = _reference_problem(ident, ref, by_id, ancestors, roots, declared_keys)
                if problem:
                    errors.append(f"{field} of node '{ident}' {problem}")
        _check_limit_uses(ident, node, errors)


def _check_limit_uses(ident: str, node: GraphNodeModel, errors: list[str]) -> None:
    """A token estimate without placeholders is a whole number, and a node names each limit once."""
    seen: set[str] = set()
    for use in node.limits:
        if use.name in seen:
            errors.append(f"Node '{ident}' uses limit '{use.name}' more than once")
        seen.add(use.name)
        try:
            literal = not parse_template(use.tokens).refs
        except PlaceholderError:
            continue  # reported above
        if literal and not (use.tokens.strip().isdigit()):
            errors.append(
                f"Tokens of limit '{use.name}' of node '{ident}' must be a whole number >= 0 or a ${{{{ }}}} "
                f"placeholder, got {use.tokens!r}"
            )


def _reference_problem(
    ident: str,
    ref: OutputRef | StoreRef,
    by_id: dict[str, GraphNodeModel],
    ancestors: LineageTree,
    roots: set[str],
    declared_keys: set[str],
) -> str | None:
    if isinstance(ref, StoreRef):
        if ref.key in declared_keys:
            return None
        return (
            f"reads store key '{ref.key}' which is neither in store_config.required_keys "
            "nor in store_config.default_values"
        )
    source = ref.identifier
    if source not in by_id:
        return f"depends on '{source}' but '{source}' is not a node of the graph"
    if ident in roots:
        return f"reads '{ref}' but the root node can only use store placeholders"
    if source == ident:
        return f"reads its own output '{ref}'"
    if ident in ancestors and not ancestors.is_ancestor(source, ident):
        return f"depends on '{source}' but '{source}' is not an ancestor of '{ident}' on every path"
    return None
