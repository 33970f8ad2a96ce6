"""The ancestor sets of a graph as one tree, so that they cost linear memory and log-time queries.

Every ancestor set that :mod:`.graph_shape` derives is a path to the top of a tree: a node's set is
its *lineage parent* plus that parent's set. For a plain node the lineage parent is the nearest node
common to every incoming path (its immediate dominator: the lowest common tree ancestor of its
predecessors); for a unite node it is the unite target. Storing one parent per node instead of one
set per node turns the quadratic sets of a long chain into a list, and "is ``a`` an ancestor of
``b``" into a level-ancestor walk.

Walks use jump pointers (Myers' skew-binary scheme): each node keeps one extra pointer chosen from
its depth alone, which makes level-ancestor and lowest-common-ancestor walks take O(log n) steps
with O(1) memory per node.

Example::

    tree = LineageTree()
    tree.add("a", None)
    tree.add("b", "a")
    tree.add("c", tree.common_ancestor(["a", "b"]))   # lineage parent 'a'
    tree["c"]                  # frozenset({'a'})
    tree.is_ancestor("a", "c")  # True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

# Index of the virtual top every tree hangs from: it lets several roots (an invalid graph still
# analysed for its other errors) share one tree, and "no common ancestor" be an ordinary answer.
_TOP = 0


class LineageTree(Mapping[str, frozenset[str]]):
    """``tree[node]`` is the node's ancestor set; nodes must be added parents first."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._names: list[str] = [""]
        self._parent: list[int] = [_TOP]
        self._jump: list[int] = [_TOP]
        self._depth: list[int] = [-1]  # a node's depth is the size of its ancestor set

    def add(self, node: str, parent: str | None) -> None:
        """Hang ``node`` below ``parent`` (``None``: the node has no ancestors)."""
        up = _TOP if parent is None else self._index[parent]
        jump = self._jump[up]
        # The skew-binary rule: jump twice as far when the two jumps above are of equal length.
        if self._depth[up] - self._depth[jump] == self._depth[jump] - self._depth[self._jump[jump]]:
            jump = self._jump[jump]
        else:
            jump = up
        self._index[node] = len(self._names)
        self._names.append(node)
        self._parent.append(up)
        self._jump.append(jump)
        self._depth.append(self._depth[up] + 1)

    def count(self, node: str) -> int:
        """How many ancestors ``node`` has (``len(tree[node])`` without building the set)."""
        return self._depth[self._index[node]]

    def is_ancestor(self, ancestor: str, node: str) -> bool:
        """Whether ``ancestor`` is in ``tree[node]`` (False when either is not in the tree)."""
        if ancestor not in self._index or node not in self._index:
            return False
        index = self._index[ancestor]
        depth = self._depth[index]
        return depth < self._depth[self._index[node]] and self._climb(self._index[node], depth) == index

    def common_ancestor(self, nodes: Iterable[str]) -> str | None:
        """The deepest node that is one of ``nodes`` or an ancestor of each of them; None if there is none."""
        found: int | None = None
        for node in nodes:
            index = self._index[node]
            found = index if found is None else self._meet(found, index)
        return None if found is None or found == _TOP else self._names[found]

    def _climb(self, index: int, depth: int) -> int:
        while self._depth[index] > depth:
            jump = self._jump[index]
            index = jump if self._depth[jump] >= depth else self._parent[index]
        return index

    def _meet(self, a: int, b: int) -> int:
        if self._depth[a] < self._depth[b]:
            a, b = b, a
        a = self._climb(a, self._depth[b])
        while a != b:
            # Nodes of equal depth have jumps of equal length, so both walks stay level.
            if self._jump[a] != self._jump[b]:
                a, b = self._jump[a], self._jump[b]
            else:
                a, b = self._parent[a], self._parent[b]
        return a

    def __getitem__(self, node: str) -> frozenset[str]:
        members: list[str] = []
        index = self._parent[self._index[node]]
        while index != _TOP:
            members.append(self._names[index])
            index = self._parent[index]
        return frozenset(members)

    def __contains__(self, node: object) -> bool:
        return node in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)
