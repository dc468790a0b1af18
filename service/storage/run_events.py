"""A run's stream of events in SQL: its ``run_events`` rows, the seq each takes from the run,
the data of the event that ends a run, and the notice that tells other processes it grew.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from service.errors import LeaseLostError
from service.storage import notices
from service.storage import queries as q
from service.storage.records import EventData, RunStatus
from service.storage.tables import utcnow

__all__ = ["add_event", "announce", "event_row", "terminal_data"]


def event_row(run_id: str, seq: int, type_: str, data: EventData, now: datetime) -> dict[str, Any]:
    return {"run_id": run_id, "seq": seq, "type": type_, "data": data, "created_at": now}


def add_event(
    conn: Connection | Session,
    run_id: str,
    type_: str,
    data: EventData,
    owner_id: str | None = None,
) -> int:
    """Append the run's next stream event (its seq is bumped in the same transaction).

    Raises:
        LeaseLostError: ``owner_id`` is given and no longer owns the run.
    """
    if owner_id is None:
        seq = conn.execute(q.BUMP_SEQ, {"run_id": run_id}).scalar_one()
    else:
        seq = conn.execute(
            q.BUMP_SEQ_AS_OWNER, {"run_id": run_id, "expected_owner": owner_id}
        ).scalar_one_or_none()
        if seq is None:
            raise LeaseLostError(run_id)
    conn.execute(q.INSERT_EVENT, event_row(run_id, seq, type_, data, utcnow()))
    return int(seq)


def terminal_data(
    status: RunStatus,
    now: datetime,
    started_at: datetime | None,
    output: dict[str, Any] | None,
    error: dict[str, Any] | None,
    interrupts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The data of a run's terminal event (``run_succeeded``, ``run_failed``, ...), or of
    ``run_interrupted``, which names what the run waits for."""
    if status == RunStatus.INTERRUPTED:
        return {"status": status.value, "interrupted_at": now.isoformat(), "interrupts": interrupts}
    data: dict[str, Any] = {"status": status.value, "finished_at": now.isoformat()}
    if started_at is not None:
        data["duration_ms"] = (now - started_at).total_seconds() * 1000
    if status == RunStatus.SUCCEEDED:
        data["output"] = output
    elif error is not None:
        data["error"] = error
    return data


def announce(
    conn: Connection, origin: str | None, changed: Iterable[str], ended: Iterable[str] = ()
) -> None:
    """Tell the other processes (on commit) that these runs changed or ended, as ``origin``;
    nothing without one (a store that does not announce)."""
    if origin is not None:
        for payload in notices.changed_payloads(origin, changed, ended):
            notices.send(conn, notices.CHANGED, payload)
