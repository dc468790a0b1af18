"""``StateGraph``: the builder. Add nodes and edges, set the entry point, then ``compile()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import GraphValidationError
from .policies import RetryPolicy
from .reducers import Reducer, resolve_reducers

if TYPE_CHECKING:
    from .compiled import CompiledGraph

__all__ = ["NodeSpec", "StateGraph"]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node as compiled: its function and policies.

    ``destinations`` lists the nodes it may ``goto`` (None: not declared, so the join rule
    assumes a node without static edges may reach any node).
    """

    name: str
    fn: Callable[..., Any]
    retry: RetryPolicy | None = None
    timeout: float | None = None
    destinations: tuple[str, ...] | None = None
    is_async: bool = False


class StateGraph:
    """A graph of node functions over a shared state dict.

    ``state_reducers`` maps state keys to a reducer: ``'extend'`` (list concatenation),
    ``'merge'`` (dict merge), ``'set'`` (last write wins, the default for other keys) or a
    callable ``(current, update) -> new``.

    Raises:
        GraphValidationError: a reducer name is unknown.
    """

    def __init__(self, state_reducers: Mapping[str, str | Reducer] | None = None) -> None:
        self._reducers = resolve_reducers(state_reducers)
        self._nodes: dict[str, NodeSpec] = {}
        self._edges: list[tuple[str, str]] = []
        self._entry_point: str | None = None

    def add_node(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        destinations: Sequence[str] | None = None,
    ) -> StateGraph:
        """Add node ``name`` running ``fn(state)``, sync or ``async def``; returns the graph.

        ``retry`` and ``timeout`` (seconds, sync nodes too) apply to each run of the node.
        ``destinations`` declares where the node may ``goto``; it draws those routes and lets
        joins wait only for branches that can really reach them.

        Raises:
            GraphValidationError: the name is taken or not a non-empty string, ``fn`` is not
                callable, or ``timeout`` is not positive.
        """
        if not isinstance(name, str) or not name:
            raise GraphValidationError(f"node name must be a non-empty string, got {name!r}")
        if name in self._nodes:
            raise GraphValidationError(f"node {name!r} is already in the graph", node=name)
        if not callable(fn):
            raise GraphValidationError(
                f"node {name!r} needs a callable, got {type(fn).__name__}", node=name
            )
        if timeout is not None and not timeout > 0:
            raise GraphValidationError(
                f"node {name!r} has timeout {timeout!r}; use a positive number of seconds",
                node=name,
            )
        if isinstance(destinations, str):
            destinations = [destinations]
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )
        self._nodes[name] = NodeSpec(
            name,
            fn,
            retry,
            timeout,
            tuple(destinations) if destinations is not None else None,
            is_async,
        )
        return self

    def add_edge(self, source: str, target: str) -> StateGraph:
        """Route every run of ``source`` on to ``target``; returns the graph.

        Nodes may be added after their edges; ``compile()`` checks that both exist.
        """
        edge = (source, target)
        if edge not in self._edges:
            self._edges.append(edge)
        return self

    def set_entry_point(self, name: str) -> StateGraph:
        """Make ``name`` the first node of every run; returns the graph."""
        self._entry_point = name
        return self

    def compile(
        self, use_parallel_engine: bool = True, max_concurrent: int | None = None
    ) -> CompiledGraph:
        """Validate the graph and return a runnable, reusable ``CompiledGraph``.

        ``max_concurrent`` caps how many node functions run at once; with
        ``use_parallel_engine=False`` nodes run one at a time.

        Raises:
            GraphValidationError: no entry point, or an edge, entry point or destination names
                a node that does not exist, or ``max_concurrent`` is below 1.
        """
        from .compiled import CompiledGraph

        if self._entry_point is None:
            raise GraphValidationError(
                "the graph has no entry point; call set_entry_point(name) before compile()"
            )
        known = self._nodes
        if self._entry_point not in known:
            raise GraphValidationError(
                f"entry point {self._entry_point!r} is not a node; add it with add_node()",
                node=self._entry_point,
            )
        for source, target in self._edges:
            for end in (source, target):
                if end not in known:
                    raise GraphValidationError(
                        f"edge {source!r} -> {target!r} names unknown node {end!r}", node=end
                    )
        for spec in known.values():
            for target in spec.destinations or ():
                if target not in known:
                    raise GraphValidationError(
                        f"node {spec.name!r} declares unknown destination {target!r}",
                        node=target,
                    )
        if max_concurrent is not None and max_concurrent < 1:
            raise GraphValidationError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if not use_parallel_engine:
            max_concurrent = 1
        return CompiledGraph(
            nodes=dict(known),
            edges=list(self._edges),
            entry_point=self._entry_point,
            reducers=dict(self._reducers),
            max_concurrent=max_concurrent,
        )
