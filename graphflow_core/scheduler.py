"""The dataflow core of a run: which node activations are ready, and what state each one sees.

This module is pure bookkeeping, with no threads, clocks or I/O; the drivers in ``executor``
call it. Its rules are the engine's semantics contract:

* Waves. Every activation carries one wave counter per loop its node lies in (see
  ``graphflow_core.loops``), and an epoch that an undeclared goto back upstream advances. A
  back edge adds one to its loop's counter; leaving a loop drops it.
* Inclusive join. A request to run node N in a wave waits while any active activation (ready
  or running) or any other waiting request *could result in* a request for N in that wave or
  an earlier one (Naiad's rule: a path to N that does not go round a loop N's wave shares, or
  an earlier wave of such a loop). Requests of the same wave that arrive meanwhile merge into
  it, so N runs once per wave. Branches never taken do not count.
* No barrier. A request that nothing active can reach becomes ready at once.
* Deterministic order. Each activation gets a key: the root is ``(0,)``; a node's only route
  continues its key (``(..., k)`` → ``(..., k+1)``), its i-th of several routes extends it
  (``key + (i, 0)``); a join takes the largest key over its parents; a back edge restarts the
  key under the prefix where the loop was entered, just past every key of the wave it closes.
  Ordering updates by key follows goto-list order, then edge order, and always puts causes
  before effects. The key, written ``0.2.0``, is the node run's id.
* Consistent views. An activation sees the input plus the updates of all its causal
  ancestors, applied in key order; never a sibling's.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from .command import Send, Target
from .errors import InvalidRouteError, NodeRunLimitError, RecursionLimitError
from .journal import NodeRecord
from .reducers import Reducer, StateBuilder
from .topology import Stamp, Topology


class Activation:
    """One run of one node: its place in the causal order and what it produced."""

    __slots__ = (
        "anchor",
        "attempt",
        "children_to_start",
        "depth",
        "epoch",
        "frames",
        "goto",
        "holders",
        "id",
        "is_send",
        "key",
        "node",
        "parents",
        "payload",
        "post",
        "slot",
        "stamp",
        "update",
        "view",
    )

    def __init__(
        self,
        node: str,
        key: tuple[int, ...],
        parents: list[Activation],
        depth: int,
        stamp: Stamp = (),
        frames: tuple[tuple[int, ...], ...] = (),
        epoch: int = 0,
        payload: Any = None,
        is_send: bool = False,
    ) -> None:
        self.node = node
        self.key = key
        self.parents = parents
        self.depth = depth
        # stamp: one wave counter per loop the node lies in; frames: for each of those loops,
        # the key prefix under which it was entered (keys restart there on every wave).
        self.stamp = stamp
        self.frames = frames
        self.epoch = epoch
        self.slot: _Slot = node if not stamp and not epoch else (node, stamp, epoch)
        self.payload = payload
        self.is_send = is_send
        self.id = ""
        self.attempt = 0
        # view: the state this activation saw; post: view plus its own update. Both are shared
        # by children and dropped once every child has started and no later join may need
        # them as the base of its view (holders), so memory stays flat.
        self.view: dict[str, Any] | None = None
        self.post: dict[str, Any] | None = None
        self.update: dict[str, Any] | None = None
        self.goto: tuple[Target, ...] = ()
        self.children_to_start = -1
        self.holders = 0
        self.anchor: Activation | None = None

    def record(self) -> NodeRecord:
        return NodeRecord(self.id, self.node, self.update, self.goto)


# Where a request waits: its node, its wave counters (one per loop) and its epoch; just the
# node when it lies in no loop in epoch 0 (the common case: a string hashes faster).
_Slot = str | tuple[str, Stamp, int]


def _node_of(slot: _Slot) -> str:
    return slot if isinstance(slot, str) else slot[0]


def _could_reach(topology: Topology, source: _Slot, target: _Slot) -> bool:
    """``Topology.could_reach`` between two slots."""
    if type(source) is str and type(target) is str:
        return target in topology.reaches[source]
    return topology.could_reach(*_parts(source), *_parts(target))


def _parts(slot: _Slot) -> tuple[str, Stamp, int]:
    return (slot, (), 0) if isinstance(slot, str) else slot


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
        # Waiting requests, one per (node, wave counters, epoch): each wave of a join is its own.
        self._pending: dict[_Slot, Activation] = {}
        self._blockers: dict[_Slot, int] = {}
        self._active: dict[_Slot, int] = {}
        self._slots_of: dict[str, list[_Slot]] = {}
        # Whether any undeclared goto went back upstream yet: until then epochs are all 0.
        self._epochs = False
        self._leaves: list[Activation] = []
        self.completed: list[Activation] = []
        depth = len(topology.loop_paths[entry_point])
        root = Activation(entry_point, (0,), [], 1, (0,) * depth, ((),) * depth)
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
        self._deactivate(act)

        edges = self._topology.edges[act.node]
        routes: tuple[Target, ...] = goto + edges if goto else edges
        count = len(routes)
        children = 0
        depth = act.depth + 1
        pending = self._pending
        # Provisional, for the children fired below to see whether ``act`` forks.
        act.children_to_start = count
        topology = self._topology
        plain = not topology.has_loops and not goto
        plain_targets = topology.plain_targets(act.node)
        if plain and count > 1 and not self._active and not pending:
            if topology.independent_edges[act.node]:
                # A fan-out with nothing else going on, into distinct non-joins none of which
                # reaches another: nothing can block them, so they are ready at once.
                for index, node in enumerate(edges):
                    self._fire(
                        Activation(node, (*act.key, index, 0), [act], depth, (), (), act.epoch)
                    )
                return
        for index, target in enumerate(routes):
            node = target.node if isinstance(target, Send) else target
            if not act.stamp and node in plain_targets:
                # A route between nodes in no loop that starts no epoch (a chain, a Send map):
                # no counters to carry.
                key = act.key
                key = (*key[:-1], key[-1] + 1) if count == 1 else (*key, index, 0)
                stamp: Stamp = ()
                frames: tuple[tuple[int, ...], ...] = ()
                epoch = act.epoch
            else:
                key, stamp, frames, epoch = self._position(act, node, index, count)
            if isinstance(target, Send):
                self._fire(
                    Activation(node, key, [act], depth, stamp, frames, epoch, target.payload, True)
                )
                children += 1
                continue
            slot: _Slot = node if not stamp and not epoch else (node, stamp, epoch)
            waiting = pending.get(slot)
            if waiting is None:
                pending[slot] = Activation(node, key, [act], depth, stamp, frames, epoch)
                self._slots_of.setdefault(node, []).append(slot)
                self._blockers[slot] = self._count_blockers(slot)
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
            self._release(act)
        if pending:
            self._fire_unblocked_joins()

    def finished(self, act: Activation) -> None:
        """Forget a failed or abandoned activation: it will not route anywhere."""
        self._deactivate(act)
        act.children_to_start = 0
        self._release(act)

    def final_state(self) -> dict[str, Any]:
        """The input plus every completed update, in key order."""
        if not self._leaves:
            return dict(self._input)
        return dict(self._materialize(self._leaves))

    # -- internals ---------------------------------------------------------------------------

    def _check_target(self, act: Activation, target: str) -> None:
        if target not in self._topology.names:
            raise InvalidRouteError(act.node, target, list(self._topology.names))

    def _position(
        self, act: Activation, node: str, index: int, count: int
    ) -> tuple[tuple[int, ...], Stamp, tuple[tuple[int, ...], ...], int]:
        """The key, wave counters, loop frames and epoch of ``act``'s ``index``-th of
        ``count`` routes.

        A back edge restarts the key under the loop's frame, just past every key of the wave
        it closes, so keys (and the node-run ids written from them) stay as short as the
        graph is deep, however many times a loop goes round.
        """
        key = act.key
        continued = (*key[:-1], key[-1] + 1) if count == 1 else (*key, index, 0)
        shared, depth, back, again = self._topology.step(act.node, node)
        epoch = act.epoch
        if again:
            epoch += 1
            self._epochs = True
        if not act.stamp and not depth:
            return continued, (), (), epoch
        if back:
            level = shared - 1
            frame = act.frames[level]
            cut = len(frame)
            if len(key) > cut and key[:cut] == frame:
                continued = (*frame, key[cut] + 1)
                headers = self._topology.multi_header[self._topology.loop_paths[node][-1]]
                if headers is not None:
                    continued = (*continued, headers[node], 0)
            stamp = (*act.stamp[:level], act.stamp[level] + 1)
            return continued, stamp, act.frames[:shared], epoch
        if shared == depth == len(act.stamp):
            return continued, act.stamp, act.frames, epoch
        entered = depth - shared
        stamp = act.stamp[:shared] + (0,) * entered
        frames = act.frames[:shared] + (continued[:-1],) * entered
        return continued, stamp, frames, epoch

    def _fire(self, act: Activation) -> None:
        if act.depth > self._limit:
            raise RecursionLimitError(act.node, self._limit)
        self._fired += 1
        if self._max_runs is not None and self._fired > self._max_runs:
            raise NodeRunLimitError(act.node, self._max_runs)
        text = ".".join(map(str, act.key))
        act.id = text if len(text) <= _MAX_ID_LENGTH else _digest(text)
        parents = act.parents
        if len(parents) > 1:
            parents.sort(key=_by_key)
        elif parents:
            # A later join below this one may need the state of the nearest fork or join
            # above it as its base: keep that alive while this activation is.
            parent = parents[0]
            anchor = (
                parent if parent.children_to_start > 1 or len(parent.parents) > 1 else parent.anchor
            )
            if anchor is not None:
                act.anchor = anchor
                anchor.holders += 1
        self._ready.append(act)
        slot = act.slot
        active = self._active
        active[slot] = active.get(slot, 0) + 1
        if self._pending:
            self._count_toward_waiting(slot, 1)

    def _deactivate(self, act: Activation) -> None:
        slot = act.slot
        left = self._active[slot] - 1
        if left:
            self._active[slot] = left
        else:
            del self._active[slot]
        if self._pending:
            self._count_toward_waiting(slot, -1)

    def _count_toward_waiting(self, slot: _Slot, change: int) -> None:
        """Add ``change`` to the blockers of every waiting request ``slot`` could reach."""
        topology = self._topology
        blockers = self._blockers
        if len(self._pending) == 1:
            (waiting_slot,) = self._pending
            if _could_reach(topology, slot, waiting_slot):
                blockers[waiting_slot] += change
            return
        for waiting_slot in self._slots_reached_by(_node_of(slot)):
            if _could_reach(topology, slot, waiting_slot):
                blockers[waiting_slot] += change

    def _slots_reached_by(self, node: str) -> list[_Slot]:
        """The waiting requests ``node`` may reach at all (the exact test is the caller's)."""
        if self._epochs and node in self._topology.to_wildcard:
            return list(self._pending)
        reach = self._topology.reaches[node]
        slots_of = self._slots_of
        if len(reach) < len(slots_of):
            return [slot for name in reach if name in slots_of for slot in slots_of[name]]
        return [slot for name, slots in slots_of.items() if name in reach for slot in slots]

    def _unqueue(self, slot: _Slot) -> None:
        del self._pending[slot]
        del self._blockers[slot]
        node = _node_of(slot)
        slots = self._slots_of[node]
        slots.remove(slot)
        if not slots:
            del self._slots_of[node]

    def _started(self, act: Activation) -> None:
        """``act`` no longer needs its parents' states; free those no one needs any more."""
        for parent in act.parents:
            parent.children_to_start -= 1
            if not parent.children_to_start and not parent.holders:
                self._release(parent)

    def _release(self, act: Activation) -> None:
        """Drop ``act``'s states, and let go of its anchor (and so on up)."""
        while True:
            act.view = act.post = None
            anchor = act.anchor
            if anchor is None:
                return
            act.anchor = None
            anchor.holders -= 1
            if anchor.holders or anchor.children_to_start:
                return
            act = anchor

    def _count_blockers(self, slot: _Slot) -> int:
        if not self._active:
            return 0
        topology = self._topology
        return sum(
            count for active, count in self._active.items() if _could_reach(topology, active, slot)
        )

    def _fire_unblocked_joins(self) -> None:
        """Fire every waiting request that nothing active or waiting may still add to.

        One pass in key order suffices: a request that fires becomes active, and so blocks any
        later candidate it may reach through the counters.
        """
        blockers = self._blockers
        if len(self._pending) == 1:
            # The common case (a chain, or one join): nothing else waits to be weighed.
            ((slot, waiting),) = self._pending.items()
            if not blockers[slot]:
                self._unqueue(slot)
                self._fire(waiting)
            return
        candidates = [w for slot, w in self._pending.items() if not blockers[slot]]
        if not candidates:
            return
        if len(candidates) > 1:
            candidates.sort(key=_by_key)
        fired = False
        for waiting in candidates:
            slot = waiting.slot
            if not blockers[slot] and not self._waits_for_other_request(waiting):
                self._unqueue(slot)
                self._fire(waiting)
                fired = True
        if not fired and not self._active:
            # Cannot happen with routes the topology knows; an undeclared goto from a node
            # with edges could still tie requests up, and then the earliest goes first.
            waiting = candidates[0]
            self._unqueue(waiting.slot)
            self._fire(waiting)

    def _waits_for_other_request(self, waiting: Activation) -> bool:
        """Whether another waiting request may, once it runs, add to this one."""
        topology = self._topology
        slots_of = self._slots_of
        if self._epochs:
            others = list(self._pending)
        else:
            reachers = topology.reachers[waiting.node]
            if len(reachers) < len(slots_of):
                others = [slot for name in reachers if name in slots_of for slot in slots_of[name]]
            else:
                others = [s for name, slots in slots_of.items() if name in reachers for s in slots]
        target = waiting.slot
        return any(slot != target and _could_reach(topology, slot, target) for slot in others)

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


# Longer ids (only from very deep nesting, or undeclared routes going round a loop) are
# replaced by a digest, so ids always fit the journal and its storage.
_MAX_ID_LENGTH = 64


def _digest(run_id: str) -> str:
    """A node-run id too long to keep, as a fixed-length digest (``h`` and 32 hex digits)."""
    return "h" + hashlib.blake2b(run_id.encode(), digest_size=16).hexdigest()
