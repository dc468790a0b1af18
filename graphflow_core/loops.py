"""Loops of a graph: which nodes repeat together, where each loop is entered, what goes round.

A *loop* is a strongly connected set of nodes. Its *headers* are the nodes entered from
outside it (the entry point counts as entered), and its *back edges* are the routes from
inside it to a header. Removing a loop's back edges and looking again inside it finds the
loops nested in it, so the result is a forest: each node lies in a chain of loops, outermost
first. This is the classic recursive decomposition (as in Havlak's loop finder); it accepts
irreducible loops, which simply have several headers.

Each run of a node carries one counter per loop it lies in (the loop's *wave*). A back edge
of a loop adds one to that loop's counter and drops the counters of loops nested in it;
leaving a loop drops its counter; entering one starts its counter at 0. The scheduler uses
these counters to decide which work can still reach a join in the same wave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Loop", "LoopForest", "find_loops"]


@dataclass(frozen=True, slots=True)
class Loop:
    """One loop: its nodes, the headers it is entered through, and its back edges."""

    index: int
    nodes: frozenset[str]
    headers: tuple[str, ...]
    back_edges: frozenset[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class LoopForest:
    """All loops, and for each node the indexes of the loops it lies in, outermost first."""

    loops: tuple[Loop, ...]
    paths: Mapping[str, tuple[int, ...]]


def find_loops(
    order: Sequence[str], successors: Mapping[str, Sequence[str]], entry_point: str
) -> LoopForest:
    """Decompose the graph ``successors`` (over the nodes in ``order``) into nested loops.

    ``order`` fixes every choice the decomposition makes (header order), so the same graph
    always gives the same loops.
    """
    position = {name: i for i, name in enumerate(order)}
    predecessors: dict[str, list[str]] = {name: [] for name in order}
    for source in order:
        for target in successors[source]:
            predecessors[target].append(source)
    loops: list[Loop] = []
    paths: dict[str, list[int]] = {name: [] for name in order}
    removed: set[tuple[str, str]] = set()
    # Work list of node sets to decompose; a loop's members are revisited without its back
    # edges, so nesting comes out outermost first.
    pending: list[list[str]] = [list(order)]
    while pending:
        members = pending.pop()
        inside = set(members)
        for component in _components(members, inside, successors, removed):
            first = component[0]
            if len(component) == 1 and (
                first not in successors[first] or (first, first) in removed
            ):
                continue
            members_set = frozenset(component)
            headers = tuple(
                name
                for name in component
                if name == entry_point or any(p not in members_set for p in predecessors[name])
            ) or (component[0],)
            back = frozenset(
                (source, header)
                for header in headers
                for source in predecessors[header]
                if source in members_set and (source, header) not in removed
            )
            loop = Loop(len(loops), members_set, headers, back)
            loops.append(loop)
            for name in component:
                paths[name].append(loop.index)
            removed |= back
            pending.append(sorted(component, key=position.__getitem__))
    return LoopForest(tuple(loops), {name: tuple(path) for name, path in paths.items()})


def _components(
    members: Sequence[str],
    inside: set[str],
    successors: Mapping[str, Sequence[str]],
    removed: set[tuple[str, str]],
) -> list[list[str]]:
    """Strongly connected components of ``members`` (Tarjan's, iterative), in member order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    order = {name: i for i, name in enumerate(members)}

    def targets(node: str) -> list[str]:
        return [t for t in successors[node] if t in inside and (node, t) not in removed]

    for root in members:
        if root in index:
            continue
        work: list[tuple[str, list[str], int]] = [(root, targets(root), 0)]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, outs, i = work[-1]
            if i < len(outs):
                work[-1] = (node, outs, i + 1)
                target = outs[i]
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, targets(target), 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component, key=order.__getitem__))
    found.sort(key=lambda c: order[c[0]])
    return found
