"""The engine's error tree. Every error the engine raises derives from ``GraphFlowError``.

::

    GraphFlowError
    ├── GraphValidationError      (also ValueError)     the graph is built wrong
    ├── InvalidRouteError         (also ValueError)     a node routed to a node that does not exist
    ├── InvalidNodeResultError    (also TypeError)      a node returned something unusable
    ├── NodeError                                       a node raised; the original is __cause__
    │   └── NodeTimeoutError      (also TimeoutError)   a node ran past its timeout
    ├── RecursionLimitError       (also RecursionError) a run went deeper than its recursion limit
    ├── NodeRunLimitError                               a run started more node runs than allowed
    ├── RunCancelledError                               the caller cancelled the run
    └── RunInterrupted                                  nodes wait for values (``interrupt``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .interrupts import Interrupt
    from .journal import NodeRecord

__all__ = [
    "GraphFlowError",
    "GraphValidationError",
    "InvalidNodeResultError",
    "InvalidRouteError",
    "NodeError",
    "NodeRunLimitError",
    "NodeTimeoutError",
    "RecursionLimitError",
    "RunCancelledError",
    "RunInterrupted",
]


class GraphFlowError(Exception):
    """Base class of every error raised by the graph engine."""


class GraphValidationError(GraphFlowError, ValueError):
    """The graph definition is invalid; ``node`` names the node at fault, if any."""

    def __init__(self, message: str, *, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class InvalidRouteError(GraphFlowError, ValueError):
    """Node ``node`` routed to ``target``, which is not a node of the graph."""

    def __init__(self, node: str, target: object, known: list[str]) -> None:
        super().__init__(
            f"node {node!r} routed to {target!r}, which is not a node of this graph; "
            f"known nodes: {', '.join(sorted(known))}"
        )
        self.node = node
        self.target = target


class InvalidNodeResultError(GraphFlowError, TypeError):
    """Node ``node`` returned a value that is not a dict, None or Command."""

    def __init__(self, node: str, value: object, detail: str | None = None) -> None:
        what = detail or (
            f"returned {type(value).__name__}; a node must return a dict of updates, "
            "None, or Command(update=..., goto=...)"
        )
        super().__init__(f"node {node!r} {what}")
        self.node = node


class NodeError(GraphFlowError):
    """Node ``node`` raised; the original exception is chained as ``__cause__``."""

    def __init__(self, node: str, run_id: str, attempt: int, message: str | None = None) -> None:
        super().__init__(message or f"node {node!r} (run {run_id}, attempt {attempt}) failed")
        self.node = node
        self.run_id = run_id
        self.attempt = attempt


class NodeTimeoutError(NodeError, TimeoutError):
    """Node ``node`` did not finish within its ``timeout`` seconds."""

    def __init__(self, node: str, run_id: str, attempt: int, timeout: float) -> None:
        super().__init__(
            node,
            run_id,
            attempt,
            f"node {node!r} (run {run_id}, attempt {attempt}) timed out after {timeout:g}s; "
            "raise its timeout with add_node(..., timeout=...) if it needs longer",
        )
        self.timeout = timeout


class RecursionLimitError(GraphFlowError, RecursionError):
    """A run went deeper than ``limit`` causal steps; ``node`` would have run next."""

    def __init__(self, node: str, limit: int) -> None:
        super().__init__(
            f"node {node!r} would run {limit + 1} steps deep, past the recursion limit of "
            f"{limit}; look for a loop without an exit, or pass invoke(..., recursion_limit=N)"
        )
        self.node = node
        self.limit = limit


class NodeRunLimitError(GraphFlowError):
    """A run would start more than ``limit`` node runs; ``node`` would have been the next."""

    def __init__(self, node: str, limit: int) -> None:
        super().__init__(
            f"node {node!r} would be node run number {limit + 1}, past the limit of {limit} "
            "node runs per run; fan out less, or raise invoke(..., max_node_runs=N)"
        )
        self.node = node
        self.limit = limit


class RunCancelledError(GraphFlowError):
    """The run was cancelled; ``completed`` holds the records of the node runs that finished."""

    def __init__(self, completed: list[NodeRecord]) -> None:
        super().__init__(
            f"the run was cancelled after {len(completed)} node runs completed; "
            "resume it with invoke(..., journal=completed)"
        )
        self.completed = completed


class RunInterrupted(GraphFlowError):  # noqa: N818 - a pause, not a failure
    """Nodes called ``interrupt()`` and nothing else can run until they get their values.

    ``interrupts`` says what each waiting node asked, in node-run order; ``journal`` holds the
    records of the node runs that completed, and ``resume`` the values given so far. Resume
    with ``invoke(state, journal=exc.journal, resume={**exc.resume, interrupt.id: value})``.
    """

    def __init__(
        self,
        interrupts: tuple[Interrupt, ...],
        journal: list[NodeRecord],
        resume: dict[str, object],
    ) -> None:
        waiting = ", ".join(f"{i.node!r} ({i.id})" for i in interrupts)
        super().__init__(
            f"the run is interrupted: {waiting} waiting for a value; resume it with "
            "invoke(state, journal=exc.journal, resume={**exc.resume, <interrupt id>: value})"
        )
        self.interrupts = interrupts
        self.journal = journal
        self.resume = resume
