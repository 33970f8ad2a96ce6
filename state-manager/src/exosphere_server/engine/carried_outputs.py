"""Which ancestor outputs a state carries in its own row, so that placeholders resolve without reading the run.

A state's placeholders ``${{ a.outputs.f }}`` name ancestors of its node. Instead of storing the whole
ancestry in every state (storage quadratic in the run's depth, one read per ancestor at every hop),
each state row carries the output fields that later nodes will read and that its own children cannot
get from it otherwise: ``(a, f)`` is carried by the states of every node strictly between ``a`` and a
node that reads ``a.outputs.f``. A child is then built from its source state alone: the source's
outputs plus what the source carries.

This is exact: a node that reads ``a`` has ``a`` among its ancestors on every path (graph validation
refuses anything else), so every node between ``a`` and the reader is dominated by ``a``, and each
of them has, on any path, a predecessor that is either ``a`` or itself between ``a`` and the reader:
the carried value always comes from the state a child is made from. A unite state is made from its
target state, which lies between any ancestor the unite reads and the unite itself.

Computing it is one backward walk per distinct ``(a, f)``, stopped at ``a``: linear in the part of
the graph between ``a`` and its readers.

Example::

    carry = carried_fields(successors={"a": ["b"], "b": ["c"], "c": []}, reads={"c": {("a", "x")}})
    carry  # {'b': {'a': ('x',)}}   b-states carry a's field x for c
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

# node -> ancestor identifier -> the fields of that ancestor's outputs its states carry
Carried = dict[str, dict[str, tuple[str, ...]]]


def carried_fields(successors: Mapping[str, Iterable[str]], reads: Mapping[str, Iterable[tuple[str, str]]]) -> Carried:
    """For each node, the ``(ancestor, field)`` output values its states must carry for nodes further on.

    ``successors`` is every node's ``next_nodes``; ``reads`` maps a node to the ``(identifier, field)``
    pairs its input placeholders read.
    """
    predecessors: defaultdict[str, list[str]] = defaultdict(list)
    for node, nexts in successors.items():
        for child in nexts:
            predecessors[child].append(node)
    readers: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for reader, refs in reads.items():
        for ref in refs:
            readers[ref].add(reader)
    found: defaultdict[str, defaultdict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for (source, field), nodes in readers.items():
        # Walk back from the readers to the source: what the walk meets lies between them.
        seen: set[str] = set()
        pending = [p for node in nodes for p in predecessors[node]]
        while pending:
            node = pending.pop()
            if node == source or node in seen:
                continue
            seen.add(node)
            found[node][source].add(field)
            pending.extend(predecessors[node])
    return {
        node: {source: tuple(sorted(fields)) for source, fields in sorted(by_source.items())}
        for node, by_source in found.items()
    }


def carry(
    wanted: Mapping[str, tuple[str, ...]], lookup: Mapping[str, Mapping[str, object]]
) -> dict[str, dict[str, object]]:
    """The values a new state carries: ``wanted`` fields read from ``lookup`` (identifier -> outputs).

    An ancestor whose outputs lack a field is still carried, with what it has, so that a reader
    later fails with "field not found" exactly as it would reading the ancestor itself.
    """
    return {
        source: {f: outputs[f] for f in fields if f in outputs}
        for source, fields in wanted.items()
        if (outputs := lookup.get(source)) is not None
    }
