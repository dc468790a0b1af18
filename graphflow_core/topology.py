"""The static shape of a compiled graph: routes out of each node, and who can reach whom."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .graph import NodeSpec


class Topology:
    """Out-edges in declaration order, and for each node the nodes that may still reach it.

    A node reaches another through static edges and declared ``destinations``. A node with
    neither is a *wildcard*: it may ``goto`` anywhere, so while it is active or waiting it is
    taken to reach every node, and a join never fires while such a node could still route to
    it. Wildcards further downstream are not expanded: a node whose only edge leads into a
    wildcard sink does not reach everything. Declaring ``destinations`` makes joins exact.
    """

    __slots__ = ("edges", "names", "reachers", "static_reachers", "wildcards")

    def __init__(self, nodes: Mapping[str, NodeSpec], edges: Sequence[tuple[str, str]]) -> None:
        self.names = frozenset(nodes)
        out: dict[str, list[str]] = {name: [] for name in nodes}
        for source, target in edges:
            out[source].append(target)
        self.edges: dict[str, tuple[str, ...]] = {n: tuple(t) for n, t in out.items()}
        self.wildcards = frozenset(
            name for name, spec in nodes.items() if not out[name] and spec.destinations is None
        )
        direct = {
            name: set(out[name]) | set(spec.destinations or ()) for name, spec in nodes.items()
        }
        static: dict[str, set[str]] = {name: set() for name in nodes}
        for source in nodes:
            for target in _closure(source, direct):
                static[target].add(source)
        self.static_reachers = {name: frozenset(r) for name, r in static.items()}
        self.reachers = {name: r | self.wildcards for name, r in self.static_reachers.items()}

    def strength(self, source: str, target: str) -> int:
        """2 if ``source`` reaches ``target`` by declared routes, 1 as a wildcard, else 0."""
        if source in self.static_reachers[target]:
            return 2
        return 1 if source in self.wildcards else 0


def _closure(start: str, direct: Mapping[str, set[str]]) -> set[str]:
    """Nodes reachable from ``start`` in one step or more."""
    seen: set[str] = set()
    stack = list(direct[start])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(direct[node])
    return seen
