"""The static shape of a compiled graph: routes out of each node, and who can reach whom."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from .graph import NodeSpec


class Topology:
    """Out-edges in declaration order, and for each node the nodes that may still reach it.

    A node reaches another through static edges and declared ``destinations``. A *join* is a
    node with two or more such incoming routes. A node with no edges and no declared
    destinations is a *wildcard*: it may ``goto`` anywhere, so while it is active it is taken
    to reach every join (but not other nodes: parallel sinks must not queue behind each other).
    Declaring ``destinations`` makes the rule exact.
    """

    __slots__ = (
        "edges",
        "joins",
        "names",
        "reachers",
        "static_reachers",
        "static_reaches",
        "wildcards",
    )

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
        inbound: dict[str, set[str]] = {name: set() for name in nodes}
        for source, targets in direct.items():
            for target in targets:
                inbound[target].add(source)
        self.joins = frozenset(name for name, sources in inbound.items() if len(sources) > 1)
        self.static_reaches = {name: frozenset(_closure(name, direct)) for name in nodes}
        static: dict[str, set[str]] = {name: set() for name in nodes}
        for source, reached in self.static_reaches.items():
            for target in reached:
                static[target].add(source)
        self.static_reachers = {name: frozenset(r) for name, r in static.items()}
        self.reachers: dict[str, frozenset[str]] = {
            name: (sources | self.wildcards if name in self.joins else sources)
            for name, sources in self.static_reachers.items()
        }

    def reached_by(self, source: str, candidates: Collection[str]) -> Iterable[str]:
        """The nodes among ``candidates`` that ``source`` may reach."""
        reaches = self.static_reaches[source]
        if source in self.wildcards:
            joins = self.joins
            return [name for name in candidates if name in joins or name in reaches]
        if len(reaches) < len(candidates):
            return [name for name in reaches if name in candidates]
        return [name for name in candidates if name in reaches]

    def strength(self, source: str, target: str) -> int:
        """2 if ``source`` reaches ``target`` by declared routes, 1 as a wildcard, else 0."""
        if source in self.static_reachers[target]:
            return 2
        return 1 if source in self.wildcards and target in self.joins else 0


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
