"""The records that cross the run-store seam: statuses, errors, node events, lease renewals.

The database stores exactly these values: a status column holds a ``RunStatus`` /
``NodeRunStatus`` value, an error column ``RunError.to_dict()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from graphflow_core import NodeError

__all__ = [
    "ACTIVE",
    "SETTLED",
    "TERMINAL",
    "DeliveryStatus",
    "database_outage",
    "EncodedJSON",
    "LeaseRenewal",
    "NodeEventWrite",
    "NodeRunStatus",
    "RunError",
    "RunStatus",
    "encode_json",
    "json_serializer",
    "outage_reason",
    "storage_failure",
]

# What clients read when storing a run's progress failed; the server log has the driver's
# message, which names tables and SQL and may echo stored values.
STORAGE_ERROR_MESSAGE = (
    "the run's progress could not be stored: the database refused a write ({kind}); "
    "the server log has the details"
)


class RunStatus(StrEnum):
    """A run's lifecycle: ``queued -> running -> succeeded | failed | cancelled | timed_out``.

    A running run whose nodes call ``interrupt()`` becomes ``interrupted`` when nothing else
    can run; resuming it queues it again. Retrying a ``failed``, ``cancelled`` or ``timed_out``
    run queues it again too. A run past one of its deadlines ends ``timed_out``, whether it
    was queued, running or interrupted.
    """

    QUEUED = "queued"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"  # past its deadline (``timeout_seconds``, ``queue_timeout_seconds``)


class NodeRunStatus(StrEnum):
    """One node run (activation): ``running -> succeeded | failed | interrupted``."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class DeliveryStatus(StrEnum):
    """A webhook delivery: ``pending -> delivered | failed`` (failed: out of attempts)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT)
# Where a run rests until someone acts: it ended, or it waits for a person.
SETTLED = (*TERMINAL, RunStatus.INTERRUPTED)


@dataclass(frozen=True)
class RunError:
    """Why a run or node run failed, as clients see it: ``{type, message, node}``."""

    type: str
    message: str
    node: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, node: str | None = None) -> RunError:
        """The error of ``exc``; for a ``NodeError``, the node's own exception and node.

        A database error anywhere in the chain becomes a ``StorageError`` that names only its
        kind: the driver's message (SQL, parameters) is for the server log, not for clients.
        """
        if isinstance(exc, NodeError):
            node, cause = exc.node, exc.__cause__ or exc
        else:
            node, cause = getattr(exc, "node", node), exc
        failure = storage_failure(exc)
        if failure is not None:
            kind = type(failure).__name__
            return cls("StorageError", STORAGE_ERROR_MESSAGE.format(kind=kind), node)
        return cls(type(cause).__name__, str(cause), node)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunError:
        return cls(str(data["type"]), str(data["message"]), data.get("node"))

    @classmethod
    def recovery_limit(
        cls, in_flight: Sequence[tuple[str, str]], attempts: int, max_attempts: int
    ) -> RunError:
        """A run failed because its process kept dying (``in_flight``: node run id, node)."""
        if in_flight:
            runs = ", ".join(f"{node!r} (node run {rid})" for rid, node in in_flight)
            where = f"while node {runs} was in flight"
        else:
            where = "between node runs"
        return cls(
            "RecoveryLimitExceeded",
            f"the process running this run died {attempts} times in a row {where}, without "
            f"progress in between; gave up after {max_attempts} recovery attempts "
            f"(GRAPHFLOW_MAX_RECOVERY_ATTEMPTS={max_attempts})",
            in_flight[0][1] if in_flight else None,
        )

    @classmethod
    def run_timeout(cls, max_seconds: float) -> RunError:
        """A run stopped for running longer than ``max_seconds``."""
        return cls(
            "RunTimeoutError",
            f"run exceeded the maximum duration of {max_seconds:g} s (GRAPHFLOW_MAX_RUN_SECONDS)",
        )

    @classmethod
    def deadline_passed(cls, timeout_seconds: float, deadline_at: datetime) -> RunError:
        """A run ended ``timed_out``: it passed ``deadline_at``, ``timeout_seconds`` after its
        first start."""
        first_start = deadline_at - timedelta(seconds=timeout_seconds)
        return cls(
            "DeadlineExceeded",
            f"the run passed its deadline of {timeout_seconds:g} s (timeout_seconds), counted "
            f"from its first start at {first_start.isoformat()}",
        )

    @classmethod
    def queue_deadline_passed(
        cls, queue_timeout_seconds: float, queue_deadline_at: datetime
    ) -> RunError:
        """A queued run ended ``timed_out``: no process started it by ``queue_deadline_at``,
        ``queue_timeout_seconds`` after it was queued."""
        queued_at = queue_deadline_at - timedelta(seconds=queue_timeout_seconds)
        return cls(
            "DeadlineExceeded",
            f"the run waited longer than {queue_timeout_seconds:g} s (queue_timeout_seconds) "
            f"to start, since it was queued at {queued_at.isoformat()}",
        )

    @classmethod
    def version_changed(cls, graph: str, started_on: str, loaded: str) -> RunError:
        """A run was not resumed: its graph changed since it started."""
        return cls(
            "GraphVersionChanged",
            f"graph {graph!r} changed from version {started_on} to {loaded} since this run "
            f"started; retry or fork it to run it on {loaded}, or register the graph with "
            "on_version_change='resume'",
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored and sent: ``{"type", "message", "node"}``."""
        return asdict(self)


def storage_failure(exc: BaseException) -> SQLAlchemyError | None:
    """The database error ``exc`` is or was caused by (``__cause__``/``__context__``), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SQLAlchemyError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def database_outage(exc: BaseException) -> SQLAlchemyError | None:
    """The error of ``exc``'s chain that says the database cannot be written for now, or None:
    a Postgres server out of reach (refused or lost connection, a server shutting down), or a
    SQLite file on a full disk or made read-only. Such an error passes: the same statement
    succeeds once the server is back, or space is freed, or the file is writable again."""
    failure = storage_failure(exc)
    if not isinstance(failure, OperationalError | InterfaceError):
        return None
    if failure.connection_invalidated or _sqlite_unwritable(failure) is not None:
        return failure
    module = type(failure.orig).__module__ if failure.orig is not None else ""
    return failure if module.startswith("psycopg") else None


def outage_reason(failure: SQLAlchemyError) -> str:
    """What a client reads of an outage (``database_outage``): the cause, never the driver's
    text, which names hosts and users."""
    return _sqlite_unwritable(failure) or "the database is unavailable"


# SQLite's primary result codes (the low byte of an extended code) of a file it cannot write.
_SQLITE_UNWRITABLE = {
    13: "the disk of the SQLite database is full",  # SQLITE_FULL
    8: "the SQLite database is read-only (its file, or the file system it is on)",  # READONLY
}


def _sqlite_unwritable(failure: SQLAlchemyError) -> str | None:
    code = getattr(getattr(failure, "orig", None), "sqlite_errorcode", None)
    return None if code is None else _SQLITE_UNWRITABLE.get(code & 0xFF)


class EncodedJSON(str):
    """A value already encoded as JSON text: stored and streamed as it is, not encoded again.

    A node's update is checked, stored in its row, in its event and sent to streams: encoding
    it once instead of three times is a good part of the cost of storing a node run.
    """

    __slots__ = ()


def encode_json(value: Any, what: str) -> EncodedJSON:
    """``value`` as JSON text. Raises ``TypeError`` naming ``what`` when it is not JSON (NaN
    and infinities included: other JSON readers reject them)."""
    try:
        return EncodedJSON(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON serializable: {exc}") from exc


def json_serializer(value: Any) -> str:
    """The JSON columns' encoder (``create_engine(json_serializer=...)``): ``EncodedJSON``
    passes through as it is."""
    return value if isinstance(value, EncodedJSON) else json.dumps(value)


# An event's payload: a mapping, or the same already encoded.
EventData = Mapping[str, Any] | EncodedJSON


@dataclass(frozen=True)
class NodeEventWrite:
    """One engine node event to persist: the node-run row change plus its stream event."""

    type: str  # node_started | node_completed | node_failed
    activation_id: str
    node: str
    status: NodeRunStatus
    attempt: int
    parents: Sequence[str]
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    update: EncodedJSON | None
    goto: EncodedJSON | None
    error: RunError | None
    data: EventData


@dataclass(frozen=True)
class LeaseRenewal:
    """The outcome of one lease heartbeat of a process."""

    owned: frozenset[str]  # active runs whose lease we hold (just extended)
    cancel_requested: frozenset[str]  # those of them a client asked to cancel


@dataclass(frozen=True)
class RunEnd:
    """How a run ends (or pauses): its status with its output, error or interrupts."""

    status: RunStatus
    output: dict[str, Any] | None
    error: RunError | None
    started_at: datetime | None
    # ``interrupted``: what each waiting node asked, as ``interrupt_view`` dicts.
    interrupts: list[dict[str, Any]] | None = None
    # The run has a webhook: queue its delivery with the end (a statement saved for the rest).
    webhook: bool = False


@dataclass(frozen=True)
class RunClaim:
    """A request to start a queued run: who takes it, and for how long its lease holds."""

    run_id: str
    owner_id: str
    lease_seconds: float


@dataclass(frozen=True)
class JournalBatch:
    """Everything one transaction stores (see ``service.runtime.journal``), in this order.

    ``creates`` are new runs (the ``runs`` row values); a run whose idempotency key is taken
    is not created. With ``max_active_runs``, the active runs are counted once, and only as
    many creates as fit under it are stored, in order; the rest are refused. ``claims``
    start queued runs. ``heads`` maps each run with events in the batch to (its owner, its
    last seq in the batch): the fence and the run's new ``last_seq``. ``events`` are node
    events with their in-memory seqs, in order; ``ends`` the runs that end in this batch,
    with the seq of their terminal event.
    """

    heads: Mapping[str, tuple[str, int]]
    events: Sequence[tuple[str, int, NodeEventWrite]]
    ends: Mapping[str, tuple[int, RunEnd]]
    creates: Sequence[Mapping[str, Any]] = ()
    claims: Sequence[RunClaim] = ()
    max_active_runs: int | None = None


@dataclass(frozen=True)
class JournalResult:
    """What a stored batch did: the runs found lost (fencing), created, refused (no room
    under ``max_active_runs``) and claimed."""

    lost: set[str]
    created: set[str]
    claimed: Mapping[str, Any]  # run id -> the started run (a ``tables.Run``)
    at: datetime  # the batch's time: ``finished_at`` of the runs it ended
    # The stream events the batch stored, per run, in seq order: (seq, type, data).
    events: Mapping[str, list[tuple[int, str, EventData]]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
