"""The static shape of a compiled graph: routes out of each node, its loops, and who can reach
whom within a wave."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .graph import NodeSpec
from .loops import find_loops

Stamp = tuple[int, ...]


class Topology:
    """Out-edges in declaration order, loops, and the *could-result-in* test for joins.

    A node reaches another through static edges and declared ``destinations``. A *join* is a
    node with two or more such incoming routes. A node with no edges and no declared
    destinations is a *wildcard*: it may ``goto`` anywhere, so while it is active it is taken
    to reach every join (but not other nodes: parallel sinks must not queue behind each other).
    Declaring ``destinations`` makes the rule exact.

    Loops are found on the declared routes (see ``graphflow_core.loops``); each run of a node
    carries one wave counter per loop it lies in. A goto that is not declared and leads back
    to a node upstream (or to the node itself) goes round a loop only run time knows of: it
    starts the next *epoch* of the run, a counter every node run carries.
    """

    __slots__ = (
        "_plain",
        "_declared_reach",
        "_reach",
        "_steps",
        "declared",
        "edges",
        "has_loops",
        "headers",
        "independent_edges",
        "joins",
        "loop_paths",
        "multi_header",
        "names",
        "to_wildcard",
        "reachers",
        "reaches",
        "wildcards",
    )

    def __init__(
        self, nodes: Mapping[str, NodeSpec], edges: Sequence[tuple[str, str]], entry_point: str
    ) -> None:
        order = list(nodes)
        self.names = frozenset(nodes)
        out: dict[str, list[str]] = {name: [] for name in nodes}
        for source, target in edges:
            out[source].append(target)
        self.edges: dict[str, tuple[str, ...]] = {n: tuple(t) for n, t in out.items()}
        self.wildcards = frozenset(
            name for name, spec in nodes.items() if not out[name] and spec.destinations is None
        )
        direct = {
            name: list(dict.fromkeys([*out[name], *(spec.destinations or ())]))
            for name, spec in nodes.items()
        }
        inbound: dict[str, set[str]] = {name: set() for name in nodes}
        for source, targets in direct.items():
            for target in targets:
                inbound[target].add(source)
        self.joins = frozenset(name for name, sources in inbound.items() if len(sources) > 1)
        declared_reach = {name: _closure(name, direct, frozenset()) for name in order}
        # What may reach what, for joins: declared routes, and each wildcard into every join
        # that is not upstream of it (a goto back upstream starts the next wave).
        routes = {
            name: direct[name]
            + (
                [j for j in order if j in self.joins and name not in declared_reach[j]]
                if name in self.wildcards
                else []
            )
            for name in order
        }
        self.declared = {name: frozenset(targets) for name, targets in direct.items()}
        self._declared_reach = declared_reach
        forest = find_loops(order, direct, entry_point)
        self.has_loops = bool(forest.loops)
        self.loop_paths: dict[str, tuple[int, ...]] = dict(forest.paths)
        self.headers: tuple[frozenset[str], ...] = tuple(
            frozenset(loop.headers) for loop in forest.loops
        )
        self.multi_header: tuple[dict[str, int] | None, ...] = tuple(
            {h: i for i, h in enumerate(loop.headers)} if len(loop.headers) > 1 else None
            for loop in forest.loops
        )
        back_edges = [loop.back_edges for loop in forest.loops]
        # _reach[node][c]: the nodes ``node`` reaches without a back edge of its c outermost
        # loops (the loops it shares with the target): work that reaches a join only by going
        # round such a loop belongs to a later wave of that join.
        self._reach: dict[str, tuple[frozenset[str], ...]] = {}
        for name in order:
            levels = [_closure(name, routes, frozenset())]
            skipped: frozenset[tuple[str, str]] = frozenset()
            for loop in self.loop_paths[name]:
                skipped = skipped | back_edges[loop]
                levels.append(_closure(name, routes, skipped))
            self._reach[name] = tuple(levels)
        # Supersets of could-reach at any counters, to pick the few requests worth testing.
        self.reaches: dict[str, frozenset[str]] = {n: self._reach[n][0] for n in order}
        inverse: dict[str, set[str]] = {name: set() for name in order}
        for name in order:
            for reached in self.reaches[name]:
                inverse[reached].add(name)
        self.reachers: dict[str, frozenset[str]] = {n: frozenset(r) for n, r in inverse.items()}
        # Whether a node's edges lead to distinct non-joins none of which reaches another:
        # such a fan-out is ready at once when nothing else is active or waiting.
        self.independent_edges = {
            name: len(set(targets)) == len(targets)
            and all(t not in self.joins and self._reach[t][0].isdisjoint(targets) for t in targets)
            for name, targets in self.edges.items()
        }
        self.to_wildcard = frozenset(
            name
            for name in order
            if name in self.wildcards or not self.wildcards.isdisjoint(self._reach[name][0])
        )
        self._steps: dict[tuple[str, str], tuple[int, int, bool, bool]] = {}
        self._plain: dict[str, frozenset[str]] = {}

    def step(self, source: str, target: str) -> tuple[int, int, bool, bool]:
        """How a route changes a node run's wave counters: ``(shared, depth, back, again)``.

        ``shared`` is how many loops (outermost first) ``source`` and ``target`` share,
        ``depth`` how many ``target`` lies in, ``back`` whether the route is a back edge of
        the innermost shared loop, and ``again`` whether it is an undeclared goto back to a
        node upstream (or to itself): the next *epoch*, a wave of a loop only run time knows.
        """
        known = self._steps.get((source, target))
        if known is not None:
            return known
        source_path = self.loop_paths[source]
        target_path = self.loop_paths[target]
        shared = 0
        for a, b in zip(source_path, target_path, strict=False):
            if a != b:
                break
            shared += 1
        back = shared > 0 and shared == len(target_path) and target in self.headers[target_path[-1]]
        again = target not in self.declared[source] and (
            target == source or source in self._declared_reach[target]
        )
        result = (shared, len(target_path), back, again)
        self._steps[(source, target)] = result
        return result

    def plain_targets(self, source: str) -> frozenset[str]:
        """The nodes ``source`` may route to without touching any wave counter: outside every
        loop, and not upstream of it (an undeclared goto there starts an epoch)."""
        known = self._plain.get(source)
        if known is None:
            known = self._plain[source] = frozenset(
                name
                for name in self.names
                if not self.loop_paths[name] and not self.step(source, name)[3]
            )
        return known

    def could_reach(
        self,
        source: str,
        stamp: Stamp,
        epoch: int,
        target: str,
        target_stamp: Stamp,
        target_epoch: int,
    ) -> bool:
        """Whether a run of ``source`` at wave counters ``stamp`` and ``epoch`` may still lead
        to a request for ``target`` at ``target_stamp`` and ``target_epoch`` (Naiad's
        could-result-in).

        Going round a loop adds one to its counter, so work of an earlier wave of a loop can
        reach any later wave, while work of the same wave reaches only what it reaches without
        going round. Work of a later wave never reaches an earlier one.
        """
        if epoch != target_epoch:
            return epoch < target_epoch and (
                source in self.to_wildcard or target in self._reach[source][0]
            )
        if not stamp and not target_stamp:
            return target in self._reach[source][0]
        shared = self.step(source, target)[0]
        for level in range(shared):
            mine = stamp[level]
            theirs = target_stamp[level]
            if mine < theirs:
                return True
            if mine > theirs:
                return False
        return target in self._reach[source][shared]


def _closure(
    start: str, routes: Mapping[str, Sequence[str]], skipped: frozenset[tuple[str, str]]
) -> frozenset[str]:
    """Nodes reachable from ``start`` in one step or more, not taking ``skipped`` routes."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        node = stack.pop()
        for target in routes[node]:
            if target not in seen and (node, target) not in skipped:
                seen.add(target)
                stack.append(target)
    return frozenset(seen)
