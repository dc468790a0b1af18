"""The dataflow core of a run: which node activations are ready, and what state each one sees.

This module is pure bookkeeping, with no threads, clocks or I/O; the drivers in ``executor``
call it. Its rules are the engine's semantics contract:

* Inclusive join. A request to run node N waits while any active activation (ready or
  running) or any other waiting request that could still reach N exists; requests that arrive
  meanwhile merge into it, so N runs once per wave. Branches never taken do not count.
* No barrier. A request that nothing active can reach becomes ready at once.
* Deterministic order. Each activation gets a key: the root is ``(0,)``; a node's only route
  continues its key (``(..., k)`` → ``(..., k+1)``), its i-th of several routes extends it
  (``key + (i, 0)``); a join takes the largest key over its parents. Ordering updates by key
  follows goto-list order, then edge order, and always puts causes before effects.
* Consistent views. An activation sees the input plus the updates of all its causal
  ancestors, applied in key order; never a sibling's.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from .command import Send, Target
from .errors import InvalidRouteError, NodeRunLimitError, RecursionLimitError
from .journal import NodeRecord
from .reducers import Reducer, StateBuilder
from .topology import Topology


class Activation:
    """One run of one node: its place in the causal order and what it produced."""

    __slots__ = (
        "attempt",
        "children_to_start",
        "depth",
        "goto",
        "id",
        "is_send",
        "key",
        "node",
        "parents",
        "payload",
        "post",
        "update",
        "view",
    )

    def __init__(
        self,
        node: str,
        key: tuple[int, ...],
        parents: list[Activation],
        depth: int,
        payload: Any = None,
        is_send: bool = False,
    ) -> None:
        self.node = node
        self.key = key
        self.parents = parents
        self.depth = depth
        self.payload = payload
        self.is_send = is_send
        self.id = ""
        self.attempt = 0
        # view: the state this activation saw; post: view plus its own update. Both are shared
        # by children and dropped once every child has started, so memory stays flat.
        self.view: dict[str, Any] | None = None
        self.post: dict[str, Any] | None = None
        self.update: dict[str, Any] | None = None
        self.goto: tuple[Target, ...] = ()
        self.children_to_start = 0

    def record(self) -> NodeRecord:
        return NodeRecord(self.id, self.node, self.update, self.goto)


def _by_key(act: Activation) -> tuple[int, ...]:
    return act.key


def _latest_first(act: Activation) -> tuple[tuple[int, ...], int, Activation]:
    """A min-heap entry that pops the largest key first: negate each part, then end with a
    sentinel 1 so that a key pops before its own prefix."""
    return ((*[-part for part in act.key], 1), id(act), act)


class RunScheduler:
    """Tracks one run: ready activations, waiting joins, and completed updates."""

    def __init__(
        self,
        topology: Topology,
        entry_point: str,
        reducers: Mapping[str, Reducer],
        state: Mapping[str, Any],
        recursion_limit: int,
        journal: Iterable[NodeRecord] = (),
        max_node_runs: int | None = None,
    ) -> None:
        self._topology = topology
        self._reducers = reducers
        self._input: dict[str, Any] = dict(state)
        self._limit = recursion_limit
        self._max_runs = max_node_runs
        self._fired = 0
        self._journal = {record.run_id: record for record in journal}
        self._ready: deque[Activation] = deque()
        self._pending: dict[str, Activation] = {}
        self._blockers: dict[str, int] = {}
        self._active: dict[str, int] = {}
        self._leaves: list[Activation] = []
        self.completed: list[Activation] = []
        root = Activation(entry_point, (0,), [], 1)
        root.view = self._input
        self._fire(root)

    # -- queries -----------------------------------------------------------------------------

    def has_ready(self) -> bool:
        return bool(self._ready)

    def is_finished(self) -> bool:
        """Nothing ready and nothing waiting (the driver knows what is running)."""
        return not self._ready and not self._pending

    def records(self) -> list[NodeRecord]:
        return [act.record() for act in self.completed]

    # -- driver API --------------------------------------------------------------------------

    def pop_ready(self) -> tuple[Activation, Any] | None:
        """Take the next activation to run and the argument to call its node with.

        Activations recorded in the journal complete here, without running.
        """
        while self._ready:
            act = self._ready.popleft()
            if self._journal:
                record = self._journal.pop(act.id, None)
                if record is not None and record.node == act.node:
                    self._started(act)
                    self.complete(act, record.update, record.goto)
                    continue
            if act.is_send:
                arg = act.payload
            else:
                if act.view is None:
                    act.view = self._materialize(act.parents)
                arg = dict(act.view)
            self._started(act)
            return act, arg
        return None

    def complete(
        self, act: Activation, update: dict[str, Any] | None, goto: tuple[Target, ...]
    ) -> None:
        """Record ``act``'s result and route on: create children, fire joins now unblocked.

        Raises:
            InvalidRouteError: a route names a node that does not exist.
            RecursionLimitError: a child would run deeper than the recursion limit.
        """
        for target in goto:
            self._check_target(act, target.node if isinstance(target, Send) else target)
        act.update = update
        act.goto = goto
        self.completed.append(act)
        self._deactivate(act.node)

        edges = self._topology.edges[act.node]
        routes: tuple[Target, ...] = goto + edges if goto else edges
        count = len(routes)
        children = 0
        depth = act.depth + 1
        for index, target in enumerate(routes):
            key = (*act.key[:-1], act.key[-1] + 1) if count == 1 else (*act.key, index, 0)
            if isinstance(target, Send):
                self._fire(Activation(target.node, key, [act], depth, target.payload, True))
                children += 1
                continue
            waiting = self._pending.get(target)
            if waiting is None:
                self._pending[target] = Activation(target, key, [act], depth)
                self._blockers[target] = self._count_blockers(target)
                children += 1
            else:
                if waiting.parents[-1] is not act:
                    waiting.parents.append(act)
                    children += 1
                if key > waiting.key:
                    waiting.key = key
                if depth > waiting.depth:
                    waiting.depth = depth
        act.children_to_start = children
        if not children:
            self._leaves.append(act)
            act.view = act.post = None
        if self._pending:
            self._fire_unblocked_joins()

    def finished(self, act: Activation) -> None:
        """Forget a failed or abandoned activation: it will not route anywhere."""
        self._deactivate(act.node)

    def final_state(self) -> dict[str, Any]:
        """The input plus every completed update, in key order."""
        if not self._leaves:
            return dict(self._input)
        return dict(self._materialize(self._leaves))

    # -- internals ---------------------------------------------------------------------------

    def _check_target(self, act: Activation, target: str) -> None:
        if target not in self._topology.names:
            raise InvalidRouteError(act.node, target, list(self._topology.names))

    def _fire(self, act: Activation) -> None:
        if act.depth > self._limit:
            raise RecursionLimitError(act.node, self._limit)
        self._fired += 1
        if self._max_runs is not None and self._fired > self._max_runs:
            raise NodeRunLimitError(act.node, self._max_runs)
        act.id = ".".join(map(str, act.key))
        if len(act.parents) > 1:
            act.parents.sort(key=_by_key)
        self._ready.append(act)
        node = act.node
        self._active[node] = self._active.get(node, 0) + 1
        if self._pending:
            blockers = self._blockers
            for waiting in self._topology.reached_by(node, self._pending):
                blockers[waiting] += 1

    def _deactivate(self, node: str) -> None:
        left = self._active[node] - 1
        if left:
            self._active[node] = left
        else:
            del self._active[node]
        if self._pending:
            blockers = self._blockers
            for waiting in self._topology.reached_by(node, self._pending):
                blockers[waiting] -= 1

    def _started(self, act: Activation) -> None:
        """``act`` no longer needs its parents' states; free those no child needs any more."""
        for parent in act.parents:
            parent.children_to_start -= 1
            if not parent.children_to_start:
                parent.view = parent.post = None

    def _count_blockers(self, node: str) -> int:
        reachers = self._topology.reachers[node]
        active = self._active
        if len(active) <= len(reachers):
            return sum(count for name, count in active.items() if name in reachers)
        return sum(active.get(name, 0) for name in reachers)

    def _fire_unblocked_joins(self) -> None:
        """Fire every waiting join that nothing active or waiting may still route to.

        One pass in key order suffices: a join that fires becomes active, and so blocks any
        later candidate it may reach through the counters.
        """
        blockers = self._blockers
        candidates = [w for n, w in self._pending.items() if not blockers[n]]
        if not candidates:
            return
        if len(candidates) > 1:
            candidates.sort(key=_by_key)
        fired = False
        for waiting in candidates:
            if not blockers[waiting.node] and not self._waits_for_other_join(waiting):
                del self._pending[waiting.node]
                del blockers[waiting.node]
                self._fire(waiting)
                fired = True
        if not fired and not self._active:
            # Nothing runs, and the waiting joins all wait on each other (a cycle through
            # wildcards): the earliest goes first, so a run never stalls.
            waiting = candidates[0]
            del self._pending[waiting.node]
            del blockers[waiting.node]
            self._fire(waiting)

    def _waits_for_other_join(self, waiting: Activation) -> bool:
        """Whether another waiting join should fire first because it may route to this one.

        The join that reaches the other more surely (declared routes beat wildcard guesses)
        goes first; between equals, the earlier key goes first.
        """
        topology = self._topology
        node = waiting.node
        pending = self._pending
        reachers = topology.reachers[node]
        others = (
            [n for n in reachers if n in pending]
            if len(reachers) < len(pending)
            else [n for n in pending if n in reachers]
        )
        for other_node in others:
            other = pending[other_node]
            if other is waiting:
                continue
            inbound = topology.strength(other_node, node)
            outbound = topology.strength(node, other_node)
            if inbound > outbound or (inbound == outbound and other.key < waiting.key):
                return True
        return False

    def _post(self, act: Activation) -> dict[str, Any]:
        if act.post is None:
            assert act.view is not None
            if act.update:
                builder = StateBuilder(act.view, self._reducers)
                builder.apply(act.update)
                act.post = builder.state
            else:
                act.post = act.view
        return act.post

    def _materialize(self, frontier: list[Activation]) -> dict[str, Any]:
        """The state after every activation in ``frontier`` and all their ancestors.

        Walks back from the frontier, latest key first, until a single activation dominates
        everything left (then its stored state is the base) or the root is passed (then the
        input is). Popping latest-first yields the walked activations in exact reverse order.
        """
        if len(frontier) == 1 and frontier[0].view is not None:
            return self._post(frontier[0])
        heap = [_latest_first(act) for act in dict.fromkeys(frontier)]
        heapq.heapify(heap)
        seen = {entry[1] for entry in heap}
        walked: list[Activation] = []
        base: dict[str, Any] = self._input
        while heap:
            if len(heap) == 1 and heap[0][2].view is not None:
                base = self._post(heap[0][2])
                break
            act = heapq.heappop(heap)[2]
            walked.append(act)
            for parent in act.parents:
                if id(parent) not in seen:
                    seen.add(id(parent))
                    heapq.heappush(heap, _latest_first(parent))
        builder = StateBuilder(base, self._reducers)
        for act in reversed(walked):
            builder.apply(act.update)
        return builder.state
