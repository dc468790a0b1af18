"""GraphFlow's parallel graph engine.

Build a ``StateGraph``, ``compile()`` it, and ``invoke()`` it. The semantics contract (joins,
ordering, views, loops, errors) is in the package README section "Engine semantics" and in
``graphflow_core.scheduler``.
"""

from __future__ import annotations

from .command import Command, Send
from .compiled import DEFAULT_RECURSION_LIMIT, CompiledGraph
from .errors import (
    GraphFlowError,
    GraphValidationError,
    InvalidNodeResultError,
    InvalidRouteError,
    NodeError,
    NodeRunLimitError,
    NodeTimeoutError,
    RecursionLimitError,
    RunCancelledError,
    RunInterrupted,
)
from .events import EventKind, NodeEvent, RunCompleted
from .graph import NodeSpec, StateGraph
from .interrupts import Interrupt, NodeInterrupt, interrupt
from .journal import NodeRecord
from .policies import RetryPolicy

__all__ = [
    "Command",
    "CompiledGraph",
    "DEFAULT_RECURSION_LIMIT",
    "EventKind",
    "GraphFlowError",
    "GraphValidationError",
    "Interrupt",
    "InvalidNodeResultError",
    "InvalidRouteError",
    "NodeError",
    "NodeEvent",
    "NodeInterrupt",
    "NodeRecord",
    "NodeRunLimitError",
    "NodeSpec",
    "NodeTimeoutError",
    "RecursionLimitError",
    "RetryPolicy",
    "RunCancelledError",
    "RunCompleted",
    "RunInterrupted",
    "Send",
    "StateGraph",
    "interrupt",
]
