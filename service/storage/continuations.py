"""Runs that go on after they settled: resumed after an interrupt, retried after a failure,
or forked into a new run from one of their node runs.

Each is one write transaction on a locked ``runs`` row, which moves the run (back) to
``queued`` with its stream event: ``run_continued``, ``run_retried`` or ``run_forked``. The
journal of completed node runs stays in ``node_runs``, so the next execution replays it and
runs only what did not complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, literal, select, update

from service.errors import (
    ConflictError,
    InvalidResumeError,
    NodeRunNotFoundError,
    RunNotFoundError,
    TooManyActiveRunsError,
)
from service.storage import notices
from service.storage import queries as q
from service.storage.records import SETTLED, NodeRunStatus, RunStatus
from service.storage.search import insert_search_rows
from service.storage.tables import NODE_COLUMNS, NodeRun, Run, new_run_values

__all__ = ["Owner", "fork", "resume", "retry"]

_runs = cast(Table, Run.__table__)
_node_runs = cast(Table, NodeRun.__table__)
# ``{"value": ...}`` was not given (a JSON null is a value).
NO_VALUE: Any = object()


@dataclass(frozen=True)
class Owner:
    """Who executes the run next: this process (``owner_id``, holding its lease) or, without
    one, whichever worker claims it first; and the cap on active runs."""

    owner_id: str | None
    lease_seconds: float
    max_active_runs: int | None
    announce: bool  # on Postgres: tell workers a run is queued

    def queue_values(self, now: datetime) -> dict[str, Any]:
        """The columns of a run queued again (or anew) for this owner."""
        lease = None if self.owner_id is None else now + timedelta(seconds=self.lease_seconds)
        return {
            "status": RunStatus.QUEUED,
            "owner_id": self.owner_id,
            "lease_expires_at": lease,
            "cancel_requested": False,
            "recovery_attempts": 0,
            "interrupts": None,
        }

    def check_room(self, conn: Connection) -> None:
        """Raises ``TooManyActiveRunsError`` when ``max_active_runs`` runs are active."""
        if self.max_active_runs is not None:
            if int(conn.scalar(q.COUNT_ACTIVE_RUNS) or 0) >= self.max_active_runs:
                raise TooManyActiveRunsError(self.max_active_runs)

    def announce_queued(self, conn: Connection) -> None:
        if self.announce and self.owner_id is None:
            notices.send(conn, notices.QUEUED)


def _locked_run(conn: Connection, run_id: str) -> dict[str, Any]:
    row = conn.execute(select(_runs).where(_runs.c.id == run_id).with_for_update()).first()
    if row is None:
        raise RunNotFoundError(run_id)
    return dict(row._mapping)


def _queue_deadline(run: Mapping[str, Any], now: datetime) -> datetime | None:
    """When a run queued (again) at ``now`` must have started: each wait in the queue is
    bounded by its ``queue_timeout_seconds``."""
    timeout = run["queue_timeout_seconds"]
    return None if timeout is None else now + timedelta(seconds=timeout)


def _queue_again(
    conn: Connection,
    run: dict[str, Any],
    owner: Owner,
    now: datetime,
    event: str,
    data: dict[str, Any],
    **changes: Any,
) -> Run:
    """Move ``run`` back to queued with ``changes``, and append ``event`` to its stream."""
    owner.check_room(conn)
    seq = run["last_seq"] + 1
    values = {**owner.queue_values(now), **changes, "last_seq": seq}
    conn.execute(update(_runs).where(_runs.c.id == run["id"]).values(**values))
    row = {"run_id": run["id"], "seq": seq, "type": event, "data": data, "created_at": now}
    conn.execute(q.INSERT_EVENT, row)
    owner.announce_queued(conn)
    return Run(**{**run, **values})


def resume(
    conn: Connection,
    run_id: str,
    values: Mapping[str, Any] | None,
    value: Any,
    owner: Owner,
    now: datetime,
) -> Run:
    """Give values to an interrupted run's waiting nodes and queue it again.

    ``values`` maps interrupt ids to values; or ``value`` (not ``NO_VALUE``) is the value of
    the one interrupt the run waits for. Interrupts left without a value ask again when the run
    goes on.

    Raises:
        RunNotFoundError: no such run.
        ConflictError: the run is not interrupted.
        InvalidResumeError: an id the run does not wait for, or ``value`` while several wait.
        TooManyActiveRunsError: ``max_active_runs`` runs are active.
    """
    run = _locked_run(conn, run_id)
    if run["status"] != RunStatus.INTERRUPTED:
        raise ConflictError(
            f"run {run_id} is {run['status']}, not interrupted: only an interrupted run can "
            "be resumed"
        )
    waiting = [i["id"] for i in run["interrupts"] or []]
    if values is None:
        if len(waiting) != 1:
            raise InvalidResumeError(
                f'"value" needs exactly one waiting node, and run {run_id} has '
                f'{len(waiting)}: give "values" by interrupt id, one of {waiting}'
            )
        values = {waiting[0]: value}
    unknown = sorted(set(values) - set(waiting))
    if unknown:
        raise InvalidResumeError(
            f"run {run_id} does not wait on {unknown}: it waits on {waiting} (interrupt ids, "
            "which are node run ids for a node's first interrupt)"
        )
    given = {**(run["resume_values"] or {}), **values}
    data = {
        "values": sorted(values),
        "waiting": [i for i in waiting if i not in values],
        "continued_at": now.isoformat(),
    }
    # Its deadline stays: it counts from the first start, time spent waiting included.
    return _queue_again(
        conn,
        run,
        owner,
        now,
        "run_continued",
        data,
        resume_values=given,
        queue_deadline_at=_queue_deadline(run, now),
    )


def retry(
    conn: Connection, run_id: str, owner: Owner, now: datetime, graph_version: str | None = None
) -> Run:
    """Queue a failed, cancelled or timed-out run again under its id; its completed node runs
    replay.

    A retry is a fresh attempt: its deadline counts again from its next start, and its queue
    deadline from now. ``graph_version`` is the version of the graph it goes on with (the one
    loaded now): retrying is how a person moves a run to a changed graph on purpose, and the
    ``run_retried`` event says so. None keeps the version the run has.

    Raises:
        RunNotFoundError: no such run.
        ConflictError: the run is not failed, cancelled or timed out.
        TooManyActiveRunsError: ``max_active_runs`` runs are active.
    """
    run = _locked_run(conn, run_id)
    if run["status"] not in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT):
        raise ConflictError(
            f"run {run_id} is {run['status']}: only a failed, cancelled or timed_out run can "
            "be retried"
        )
    data: dict[str, Any] = {
        "previous_status": str(run["status"]),
        "previous_error": run["error"],
        "retried_at": now.isoformat(),
    }
    version = run["graph_version"] if graph_version is None else graph_version
    if version != run["graph_version"]:
        data["graph_version"] = {"from": run["graph_version"], "to": version}
    return _queue_again(
        conn,
        run,
        owner,
        now,
        "run_retried",
        data,
        output=None,
        error=None,
        finished_at=None,
        deadline_at=None,
        queue_deadline_at=_queue_deadline(run, now),
        graph_version=version,
    )


def fork(
    conn: Connection,
    source_id: str,
    from_node_run: str,
    run_input: dict[str, Any],
    new_id: str,
    owner: Owner,
    now: datetime,
    graph_version: str | None = None,
) -> Run:
    """A new queued run of the same graph on ``run_input`` that reuses the source run's
    journal up to ``from_node_run``: the node runs that completed before it are copied and
    replay; it and everything after it run again.

    The fork records ``graph_version`` (the graph's version loaded now: forking is a choice to
    go on with it), takes the source's ``metadata`` and ``tags``, and its ``timeout_seconds``
    and ``queue_timeout_seconds``, counted afresh.

    Raises:
        RunNotFoundError: no such source run.
        ConflictError: the source run is queued or running.
        NodeRunNotFoundError: the source run has no node run ``from_node_run``.
        TooManyActiveRunsError: ``max_active_runs`` runs are active.
    """
    source = _locked_run(conn, source_id)
    if source["status"] not in SETTLED:
        raise ConflictError(
            f"run {source_id} is {source['status']}: fork it once it has ended or is interrupted"
        )
    pivot = conn.execute(
        select(_node_runs.c.completed_seq).where(
            _node_runs.c.run_id == source_id, _node_runs.c.activation_id == from_node_run
        )
    ).first()
    if pivot is None:
        raise NodeRunNotFoundError(source_id, from_node_run)
    owner.check_room(conn)
    values = new_run_values(
        run_id=new_id,
        graph=source["graph"],
        input=run_input,
        max_concurrent=source["max_concurrent"],
        idempotency_key=None,
        owner_id=owner.owner_id,
        lease_seconds=owner.lease_seconds,
        graph_version=graph_version,
        run_metadata=source["run_metadata"],
        tags=source["tags"],
        timeout_seconds=source["timeout_seconds"],
        queue_timeout_seconds=source["queue_timeout_seconds"],
    )
    seq = source["last_seq"] + 1  # past every copied node run's seqs
    values["last_seq"] = seq
    conn.execute(q.INSERT_RUN, values)
    insert_search_rows(conn, [values])  # found by the same tags and metadata as its source
    reused = select(
        *[literal(new_id) if c == "run_id" else _node_runs.c[c] for c in NODE_COLUMNS]
    ).where(_node_runs.c.run_id == source_id, _node_runs.c.status == NodeRunStatus.SUCCEEDED)
    if pivot.completed_seq is not None:  # it completed: reuse only what completed before it
        reused = reused.where(_node_runs.c.completed_seq < pivot.completed_seq)
    copy = insert(_node_runs).from_select(list(NODE_COLUMNS), reused)
    # psycopg reports -1 for an INSERT ... SELECT unless SQLAlchemy is told to keep the count.
    copied = conn.execute(copy, execution_options={"preserve_rowcount": True}).rowcount
    data = {
        "from_run": source_id,
        "from_node_run": from_node_run,
        "reused_node_runs": copied,
        "forked_at": now.isoformat(),
    }
    conn.execute(
        q.INSERT_EVENT,
        {"run_id": new_id, "seq": seq, "type": "run_forked", "data": data, "created_at": now},
    )
    owner.announce_queued(conn)
    return Run(**values)
