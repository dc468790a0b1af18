"""Events a run emits as it goes: one per node run start, completion and failure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .command import Target
from .interrupts import Interrupt
from .journal import NodeRecord

__all__ = ["EventKind", "NodeEvent", "RunCompleted"]


class EventKind(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the node called interrupt() and waits for a value


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """One step of one node run (an activation).

    ``run_id`` identifies the activation and is the same on every run of the same graph and
    input; ``parents`` are the activations that caused it. Times are ``time.monotonic()``.
    ``update`` is the node's delta (COMPLETED only), ``error`` the exception (FAILED only);
    ``retrying`` tells whether another attempt follows a failure; ``interrupt`` is what an
    INTERRUPTED node run asked for.
    """

    kind: EventKind
    run_id: str
    node: str
    parents: tuple[str, ...]
    attempt: int
    started_at: float
    ended_at: float | None = None
    update: dict[str, Any] | None = None
    goto: tuple[Target, ...] = ()
    error: BaseException | None = None
    retrying: bool = False
    interrupt: Interrupt | None = None

    def record(self) -> NodeRecord:
        """The journal record of a COMPLETED event.

        Raises:
            ValueError: the event is not a COMPLETED event.
        """
        if self.kind is not EventKind.COMPLETED:
            raise ValueError(f"only COMPLETED events have a record; this one is {self.kind}")
        return NodeRecord(self.run_id, self.node, self.update, self.goto)


@dataclass(frozen=True, slots=True)
class RunCompleted:
    """The last item of ``stream()``/``astream()``: the final state of the run."""

    state: dict[str, Any]
