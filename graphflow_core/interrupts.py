"""Human-in-the-loop pauses: ``interrupt(payload)`` inside a node waits for a value.

The first time a node run calls ``interrupt``, the node stops there and the run goes on with
every branch that is not waiting, until nothing else can run; then ``invoke`` raises
``RunInterrupted`` with what each waiting node asked and a journal of the node runs that
completed. Resuming is invoking again with that journal and ``resume={interrupt id: value}``:
completed node runs are replayed from the journal, and each waiting node runs again **from its
start**, where ``interrupt`` now returns the value. Code before ``interrupt`` therefore runs
once more on resume (LangGraph's rule): keep side effects after it, or make them idempotent.

A node may call ``interrupt`` several times; they are told apart by order. The first one's id
is the node run's id (``"0.1"``), the k-th one's ``"0.1#k"`` (k from 1). Each resume adds
values; pass every value given so far (``RunInterrupted.resume`` holds them) with the new ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .errors import GraphFlowError

__all__ = ["Interrupt", "NodeInterrupt", "interrupt"]


@dataclass(frozen=True, slots=True)
class Interrupt:
    """What one waiting node asked for: ``payload``, under ``id`` (the key of its value)."""

    id: str
    node: str
    node_run_id: str
    payload: Any


class NodeInterrupt(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """Raised by ``interrupt`` to stop its node until a value is given.

    A ``BaseException``: an ``except Exception`` in the node does not swallow it, and retry
    policies never retry it.
    """

    def __init__(self, interrupt: Interrupt) -> None:
        super().__init__(f"node {interrupt.node!r} is waiting for a value ({interrupt.id})")
        self.interrupt = interrupt


class NodeRunContext:
    """What ``interrupt`` needs to know about the node run calling it."""

    __slots__ = ("calls", "node", "node_run_id", "resume")

    def __init__(self, node: str, node_run_id: str, resume: Mapping[str, Any]) -> None:
        self.node = node
        self.node_run_id = node_run_id
        self.resume = resume
        self.calls = 0


current_node_run: ContextVar[NodeRunContext | None] = ContextVar("graphflow_node_run", default=None)


def interrupt_id(node_run_id: str, index: int) -> str:
    """The id of the ``index``-th interrupt (from 0) of a node run."""
    return node_run_id if index == 0 else f"{node_run_id}#{index}"


def interrupt(payload: Any = None) -> Any:
    """Pause the calling node until a value is given for this call; return that value.

    ``payload`` tells whoever resumes the run what is asked (it is handed back in
    ``RunInterrupted.interrupts``; the service stores it, so there it must be JSON).

    Raises:
        NodeInterrupt: no value was given yet; the engine catches it (do not).
        GraphFlowError: called outside a node run of a graph.
    """
    context = current_node_run.get()
    if context is None:
        raise GraphFlowError(
            "interrupt() was called outside a node run; call it from a node function "
            "while the graph runs"
        )
    key = interrupt_id(context.node_run_id, context.calls)
    context.calls += 1
    if key in context.resume:
        return context.resume[key]
    raise NodeInterrupt(Interrupt(key, context.node, context.node_run_id, payload))
