"""Every SQL statement of the run store, built once (or by a small function) in one place.

``SqlRunStore`` (``service.storage.sql``) executes them. The hot write path runs prebuilt Core
statements with bound parameters: building a statement per call costs more than executing it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from service.storage.filters import RunFilter
from service.storage.records import ACTIVE, NodeRunStatus, RunStatus
from service.storage.tables import (
    NODE_COLUMNS,
    NodeRun,
    Run,
    RunEvent,
    RunMetadata,
    RunTag,
    UTCDateTime,
)

__all__ = [
    "BUMP_SEQ",
    "BUMP_SEQ_AS_OWNER",
    "CLAIM_QUEUED",
    "COUNT_ACTIVE_RUNS",
    "COUNT_ACTIVE_RUNS_BY_STATUS",
    "END_RUN",
    "INSERT_EVENT",
    "INSERT_RUN",
    "INSERT_RUN_METADATA",
    "INSERT_RUN_TAGS",
    "NEXT_QUEUED",
    "OWNED_ACTIVE",
    "SET_DEADLINE",
    "SET_LAST_SEQ",
    "count_upto",
    "events_after",
    "expired_runs",
    "in_flight",
    "insert_run_unless_key_used",
    "journal",
    "last_resume_seq",
    "list_runs",
    "node_runs",
    "node_upsert",
    "overdue",
    "overdue_runs",
    "prior_attempts",
    "progressed_since",
    "run_by_idempotency_key",
]

_runs = cast(Table, Run.__table__)
_node_runs = cast(Table, NodeRun.__table__)

BUMP_SEQ = (
    update(_runs)
    .where(_runs.c.id == bindparam("run_id"))
    .values(last_seq=_runs.c.last_seq + 1)
    .returning(_runs.c.last_seq)
)
"""Take the run's next event seq: ``{run_id}`` -> the new ``last_seq``."""

BUMP_SEQ_AS_OWNER = BUMP_SEQ.where(_runs.c.owner_id == bindparam("expected_owner"))
"""The same, fenced: only the run's current owner may append (no row: ``LeaseLostError``)."""

# A queued run past its queue deadline is not started: the deadline sweep ends it.
_IN_TIME = or_(_runs.c.queue_deadline_at.is_(None), _runs.c.queue_deadline_at > bindparam("now"))

CLAIM_QUEUED = (
    update(_runs)
    .where(
        _runs.c.id.in_(bindparam("run_ids", expanding=True)),
        _runs.c.status == RunStatus.QUEUED,
        _IN_TIME,
    )
    .values(
        status=RunStatus.RUNNING,
        started_at=bindparam("now"),
        owner_id=bindparam("owner_id"),
        lease_expires_at=bindparam("lease"),
        last_seq=_runs.c.last_seq + 1,
    )
    .returning(*_runs.c)
)
"""Start every queued run of ``run_ids`` under one owner that is within its queue deadline;
the rows of those started."""

SET_DEADLINE = (
    update(_runs)
    .where(_runs.c.id == bindparam("run_id"), _runs.c.deadline_at.is_(None))
    .values(deadline_at=bindparam("deadline"))
)
"""Fix a run's deadline at its first start (``{run_id, deadline}``); later starts keep it."""

NEXT_QUEUED = (
    select(_runs.c.id)
    .where(
        _runs.c.status == RunStatus.QUEUED,
        or_(_runs.c.owner_id.is_(None), _runs.c.lease_expires_at < bindparam("now")),
        _IN_TIME,
    )
    .order_by(_runs.c.created_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
"""Up to ``limit`` queued runs nobody holds (no owner, or its lease expired), oldest first;
Postgres skips the rows other claimers have locked (SQLite has one writer at a time)."""

OWNED_ACTIVE = (
    select(_runs.c.id)
    .where(
        _runs.c.id.in_(bindparam("run_ids", expanding=True)),
        _runs.c.owner_id == bindparam("owner_id"),
        _runs.c.status.in_(ACTIVE),
    )
    .with_for_update()
)
"""A journal batch's fence: which of ``run_ids`` the owner still holds (locked till commit)."""

SET_LAST_SEQ = (
    update(_runs).where(_runs.c.id == bindparam("run_id")).values(last_seq=bindparam("seq"))
)
END_RUN = (
    update(_runs)
    .where(_runs.c.id == bindparam("run_id"))
    .values(
        last_seq=bindparam("seq"),
        status=bindparam("status"),
        output=bindparam("output"),
        error=bindparam("error"),
        finished_at=bindparam("finished_at"),
        interrupts=bindparam("interrupts"),
        lease_expires_at=None,
    )
)


INSERT_EVENT = insert(cast(Table, RunEvent.__table__))
INSERT_RUN = insert(_runs)
INSERT_RUN_TAGS = insert(cast(Table, RunTag.__table__))
INSERT_RUN_METADATA = insert(cast(Table, RunMetadata.__table__))


def insert_run_unless_key_used(dialect: str) -> Any:
    """Insert a run; no row when its idempotency key is taken (``RETURNING id`` says which)."""
    stmt = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(_runs)
    return stmt.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(_runs.c.id)


COUNT_ACTIVE_RUNS = select(func.count()).select_from(Run).where(Run.status.in_(ACTIVE))

COUNT_ACTIVE_RUNS_BY_STATUS = (
    select(_runs.c.status, func.count()).where(_runs.c.status.in_(ACTIVE)).group_by(_runs.c.status)
)
"""``(status, count)`` of the queued and running runs (the status index bounds the scan to
them, however many ended runs the table keeps)."""

# What a retry overwrites: all but the key and the first start's ``seq``.
_NODE_FIELDS = tuple(c for c in NODE_COLUMNS if c not in ("run_id", "activation_id", "seq"))


def node_upsert(dialect: str) -> Any:
    """Insert a node run, or update it in place on a retry (keeping its first ``seq``)."""
    stmt = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(_node_runs)
    completed = _node_runs.c.completed_seq
    return stmt.on_conflict_do_update(
        index_elements=["run_id", "activation_id"],
        set_={
            **{f: stmt.excluded[f] for f in _NODE_FIELDS if f != "completed_seq"},
            "completed_seq": func.coalesce(stmt.excluded.completed_seq, completed),
        },
    )


def run_by_idempotency_key(key: str) -> Select[Run]:
    return select(Run).where(Run.idempotency_key == key)


def node_runs(run_id: str) -> Select[NodeRun]:
    """The run's node runs in start order."""
    return select(NodeRun).where(NodeRun.run_id == run_id).order_by(NodeRun.seq)


def list_runs(
    where: RunFilter,
    *,
    limit: int,
    before: tuple[datetime, str] | None,
    driving: int | None = None,
) -> Select[Run]:
    """The runs ``where`` selects, newest first, after the ``before`` keyset position
    ``(created_at, id)``; ``driving``: see ``RunFilter.condition``.

    The position is one row-value comparison, which both databases bound an index range by
    (``ix_runs_created_at_id`` and the graph and status indexes that end in the same columns):
    a deep page reads no more rows than the first.
    """
    stmt = select(Run).where(where.condition(driving=driving))
    if before is not None:
        created, run_id = before
        position = tuple_(literal(created, UTCDateTime()), literal(run_id, Run.id.type))
        stmt = stmt.where(tuple_(Run.created_at, Run.id) < position)
    return stmt.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)


def count_upto(run_ids: Select[str], cap: int) -> Select[int]:
    """How many rows ``run_ids`` has, counting no further than ``cap``."""
    return select(func.count()).select_from(run_ids.limit(cap).subquery())


def expired_runs(now: datetime, exclude_owner: str | None) -> Select[str]:
    """Ids of active runs whose lease expired before ``now``, oldest first. Runs queued for
    any worker (no owner) are not among them: workers claim those (``NEXT_QUEUED``)."""
    stmt = (
        select(Run.id)
        .where(
            Run.status.in_(ACTIVE),
            Run.owner_id.is_not(None),
            or_(Run.lease_expires_at.is_(None), Run.lease_expires_at < now),
        )
        .order_by(Run.created_at)
    )
    if exclude_owner is not None:
        stmt = stmt.where(Run.owner_id != exclude_owner)
    return stmt


def overdue(now: datetime) -> ColumnElement[bool]:
    """Runs past a deadline that no live process executes: queued past their queue deadline,
    or queued, interrupted or running under an expired lease past their deadline. (A live
    owner ends its own runs at their deadline, with their nodes in flight as on cancel.)"""
    unowned = or_(
        Run.status.in_((RunStatus.QUEUED, RunStatus.INTERRUPTED)),
        and_(
            Run.status == RunStatus.RUNNING,
            or_(Run.lease_expires_at.is_(None), Run.lease_expires_at < now),
        ),
    )
    return and_(
        # The status index bounds the scan to runs that have not ended, however many ended
        # runs with deadlines long past the table keeps.
        Run.status.in_((RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.INTERRUPTED)),
        or_(
            and_(Run.status == RunStatus.QUEUED, Run.queue_deadline_at <= now),
            and_(Run.deadline_at <= now, unowned),
        ),
    )


def overdue_runs(
    now: datetime, run_ids: list[str] | None, limit: int
) -> Select[str, RunStatus, float | None, float | None, datetime | None, datetime | None]:
    """Up to ``limit`` runs ``overdue`` at ``now`` (of ``run_ids`` only, when given), with
    what their errors name."""
    stmt = select(
        Run.id,
        Run.status,
        Run.timeout_seconds,
        Run.queue_timeout_seconds,
        Run.deadline_at,
        Run.queue_deadline_at,
    ).where(overdue(now))
    if run_ids is not None:
        stmt = stmt.where(Run.id.in_(run_ids))
    return stmt.limit(limit)


def in_flight(run_id: str) -> Select[str, str]:
    """(node run id, node) of the node runs started but not ended, in start order."""
    return (
        select(NodeRun.activation_id, NodeRun.node)
        .where(NodeRun.run_id == run_id, NodeRun.status == NodeRunStatus.RUNNING)
        .order_by(NodeRun.seq)
    )


def last_resume_seq(run_id: str) -> Select[int]:
    """The seq of the run's latest ``run_resumed`` event (NULL when never resumed)."""
    return select(func.max(RunEvent.seq)).where(
        RunEvent.run_id == run_id, RunEvent.type == "run_resumed"
    )


def progressed_since(run_id: str, seq: int) -> Select[str]:
    """One node run of the run completed after event ``seq``, if any."""
    return (
        select(NodeRun.activation_id)
        .where(NodeRun.run_id == run_id, NodeRun.completed_seq > seq)
        .limit(1)
    )


def prior_attempts(run_id: str) -> Select[str, int]:
    """(node run id, attempt) of the run's node runs that failed or were interrupted."""
    return select(NodeRun.activation_id, NodeRun.attempt).where(
        NodeRun.run_id == run_id,
        NodeRun.status.in_((NodeRunStatus.FAILED, NodeRunStatus.INTERRUPTED)),
    )


def journal(run_id: str) -> Select[NodeRun]:
    """The run's completed node runs in completion order."""
    return (
        select(NodeRun)
        .where(NodeRun.run_id == run_id, NodeRun.status == NodeRunStatus.SUCCEEDED)
        .order_by(NodeRun.completed_seq)
    )


def events_after(run_id: str, after: int, limit: int) -> Select[RunEvent]:
    return (
        select(RunEvent)
        .where(RunEvent.run_id == run_id, RunEvent.seq > after)
        .order_by(RunEvent.seq)
        .limit(limit)
    )
