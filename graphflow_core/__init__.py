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
)
from .events import EventKind, NodeEvent, RunCompleted
from .graph import NodeSpec, StateGraph
from .journal import NodeRecord
from .policies import RetryPolicy

__all__ = [
    "Command",
    "CompiledGraph",
    "DEFAULT_RECURSION_LIMIT",
    "EventKind",
    "GraphFlowError",
    "GraphValidationError",
    "InvalidNodeResultError",
    "InvalidRouteError",
    "NodeError",
    "NodeEvent",
    "NodeRecord",
    "NodeRunLimitError",
    "NodeSpec",
    "NodeTimeoutError",
    "RecursionLimitError",
    "RetryPolicy",
    "RunCancelledError",
    "RunCompleted",
    "Send",
    "StateGraph",
]
