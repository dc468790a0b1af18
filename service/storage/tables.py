"""SQLAlchemy tables: runs, node_runs (one row per node activation), run_events and the
webhook outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.storage.records import DeliveryStatus, NodeEventWrite, NodeRunStatus, RunStatus


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes; stored naive-UTC on SQLite (which has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StatusType(TypeDecorator[StrEnum]):
    """A status column: the enum's value stored as text, read back as the enum."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum: type[StrEnum]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Names users choose are TEXT (migration 0002): no length a graph can overflow.
    graph: Mapped[str] = mapped_column(Text, index=True)
    status: Mapped[RunStatus] = mapped_column(StatusType(RunStatus), index=True)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    max_concurrent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Durability: which process runs it, until when its lease holds, how often it was resumed.
    owner_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    recovery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    # Interrupts (migration 0003): what an ``interrupted`` run waits for, as
    # ``[{id, node_run_id, node, payload}]``, and the values given so far by interrupt id.
    interrupts: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    resume_values: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Where the run's summary is POSTed when it ends or is interrupted (``webhook_deliveries``).
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Operations (migration 0004): the graph version it started on, what its creator attached
    # (searchable through ``run_tags`` and ``run_metadata_values``), and its deadlines.
    graph_version: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    tags: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    timeout_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    queue_timeout_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    queue_deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_runs_created_at_id", "created_at", "id"),
        # Filtered lists page by (created_at, id) within a graph or a status.
        Index("ix_runs_graph_created_at_id", "graph", "created_at", "id"),
        Index("ix_runs_status_created_at_id", "status", "created_at", "id"),
        Index("ix_runs_finished_at", "finished_at"),  # retention
        Index("ix_runs_deadline_at", "deadline_at"),
        Index("ix_runs_queue_deadline_at", "queue_deadline_at"),
    )


class RunTag(Base):
    """One tag of a run: ``GET /runs?tag=`` finds runs by it through ``ix_run_tags_tag``."""

    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_run_tags_tag", "tag", "run_id"),)


class RunMetadata(Base):
    """One top-level metadata key of a run, its value as text (strings as they are, other
    values as JSON): ``GET /runs?metadata.<key>=<value>`` finds runs by it."""

    __tablename__ = "run_metadata_values"

    run_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_run_metadata_values_key_value", "key", "value", "run_id"),)


class NodeRun(Base):
    __tablename__ = "node_runs"

    run_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    activation_id: Mapped[str] = mapped_column(Text, primary_key=True)
    node: Mapped[str] = mapped_column(Text)
    status: Mapped[NodeRunStatus] = mapped_column(StatusType(NodeRunStatus))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    parents: Mapped[list[str]] = mapped_column(JSON, default=list)
    seq: Mapped[int] = mapped_column(Integer)  # event seq of its first start: display order
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    update: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    goto: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    completed_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)  # journal order


class RunEvent(Base):
    __tablename__ = "run_events"

    run_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """The outbox of webhooks: one row per delivery, written in the transaction that ends (or
    interrupts) the run, and worked off by ``service.webhooks.delivery``."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("runs.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(32))  # the run event it reports: run_succeeded...
    event_seq: Mapped[int] = mapped_column(Integer)  # that event's seq: the payload's snapshot
    status: Mapped[DeliveryStatus] = mapped_column(StatusType(DeliveryStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When a pending delivery is due; while one is being sent, when its claim lapses.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)


# The keys of ``node_run_values`` and of a ``run_events`` row, in column order.
NODE_COLUMNS = (
    "run_id",
    "activation_id",
    "node",
    "status",
    "attempt",
    "parents",
    "seq",
    "started_at",
    "finished_at",
    "duration_ms",
    "update",
    "goto",
    "error",
    "completed_seq",
)
EVENT_COLUMNS = ("run_id", "seq", "type", "data", "created_at")


def values_of(row: Base) -> dict[str, Any]:
    """A row's column values by attribute name, as the ``*_values`` functions build them."""
    return {attr.key: getattr(row, attr.key) for attr in row.__mapper__.column_attrs}


def new_run_values(
    *,
    run_id: str,
    graph: str,
    input: dict[str, Any],
    max_concurrent: int | None,
    idempotency_key: str | None,
    owner_id: str | None,
    lease_seconds: float,
    webhook_url: str | None = None,
    graph_version: str | None = None,
    run_metadata: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    timeout_seconds: float | None = None,
    queue_timeout_seconds: float | None = None,
) -> dict[str, Any]:
    """The ``runs`` row of a new, queued run: its creator holds its lease, or, without an
    ``owner_id``, any worker may claim it."""
    now = utcnow()
    return {
        "id": run_id,
        "graph": graph,
        "status": RunStatus.QUEUED,
        "input": input,
        "max_concurrent": max_concurrent,
        "idempotency_key": idempotency_key,
        "created_at": now,
        "owner_id": owner_id,
        "lease_expires_at": None if owner_id is None else now + timedelta(seconds=lease_seconds),
        "recovery_attempts": 0,
        "cancel_requested": False,
        "last_seq": 0,
        "interrupts": None,
        "resume_values": None,
        "webhook_url": webhook_url,
        "graph_version": graph_version,
        "run_metadata": run_metadata,
        "tags": tags,
        "timeout_seconds": timeout_seconds,
        "queue_timeout_seconds": queue_timeout_seconds,
        "deadline_at": None,  # set when it first starts
        "queue_deadline_at": None
        if queue_timeout_seconds is None
        else now + timedelta(seconds=queue_timeout_seconds),
    }


def node_run_values(run_id: str, seq: int, write: NodeEventWrite) -> dict[str, Any]:
    """The ``node_runs`` row of a node event stored at ``seq``."""
    return {
        "run_id": run_id,
        "activation_id": write.activation_id,
        "seq": seq,
        "node": write.node,
        "status": write.status,
        "attempt": write.attempt,
        "parents": list(write.parents),
        "started_at": write.started_at,
        "finished_at": write.finished_at,
        "duration_ms": write.duration_ms,
        "update": write.update,
        "goto": write.goto,
        "error": None if write.error is None else write.error.to_dict(),
        "completed_seq": seq if write.status == NodeRunStatus.SUCCEEDED else None,
    }
