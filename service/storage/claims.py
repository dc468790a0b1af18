"""Claims: starting queued runs. A claim moves a queued run to running under its new owner's
lease, with its ``run_started`` event row, which the caller stores with its other events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from service.storage import queries as q
from service.storage.records import RunClaim
from service.storage.run_events import event_row
from service.storage.tables import Run

__all__ = ["claim_next", "claim_queued", "group_claims"]


def claim_queued(
    conn: Connection, run_ids: list[str], owner_id: str, lease_seconds: float, now: datetime
) -> list[tuple[Run, dict[str, Any]]]:
    """Start those of ``run_ids`` that are queued (and within their queue deadline), in one
    statement: each started run with its ``run_started`` event row (for the caller to insert).

    A run with ``timeout_seconds`` gets its deadline at its first start, in the same
    transaction; later starts (after a resume) keep it, so it counts from the first start.
    """
    lease = now + timedelta(seconds=lease_seconds)
    params = {"run_ids": run_ids, "now": now, "owner_id": owner_id, "lease": lease}
    started = []
    deadlines = []
    for row in conn.execute(q.CLAIM_QUEUED, params):
        run = Run(**row._mapping)
        if run.timeout_seconds is not None and run.deadline_at is None:
            # Computed here rather than in SQL: date arithmetic differs between the dialects.
            run.deadline_at = now + timedelta(seconds=run.timeout_seconds)
            deadlines.append({"run_id": run.id, "deadline": run.deadline_at})
        data = {"graph": run.graph, "started_at": now.isoformat()}
        if run.deadline_at is not None:
            data["deadline_at"] = run.deadline_at.isoformat()
        started.append((run, event_row(run.id, run.last_seq, "run_started", data, now)))
    if deadlines:
        conn.execute(q.SET_DEADLINE, deadlines)
    return started


def claim_next(
    conn: Connection, owner_id: str, lease_seconds: float, limit: int, now: datetime
) -> list[tuple[Run, dict[str, Any]]]:
    """Start up to ``limit`` queued runs that no live process holds, oldest first, as
    ``claim_queued`` does.

    On Postgres the rows are picked with ``FOR UPDATE SKIP LOCKED``: workers claiming at
    the same time take different runs and never wait for each other.
    """
    run_ids = list(conn.scalars(q.NEXT_QUEUED, {"now": now, "limit": limit}))
    if not run_ids:
        return []
    return claim_queued(conn, run_ids, owner_id, lease_seconds, now)


def group_claims(claims: Sequence[RunClaim]) -> dict[tuple[str, float], list[str]]:
    """Claims by (owner, lease): each group is one statement."""
    groups: dict[tuple[str, float], list[str]] = {}
    for claim in claims:
        groups.setdefault((claim.owner_id, claim.lease_seconds), []).append(claim.run_id)
    return groups
