"""Leases and recovery: a process holds the runs it executes under leases it renews
(``heartbeat``) and lets go of when it stops (``release``); a run whose lease expired
(``expired``) is taken over by another process, which resumes it (``take_over``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from service.storage import queries as q
from service.storage.records import ACTIVE, LeaseRenewal, RunError, RunStatus
from service.storage.run_events import add_event
from service.storage.tables import Run

__all__ = ["RECOVERY_LOCK", "expired", "heartbeat", "release", "take_over"]

# The session advisory lock of the recovery sweep ("gfrecov"): one process sweeps at a time.
RECOVERY_LOCK = 0x6766_7265_636F_76


def heartbeat(session: Session, owner_id: str, lease_seconds: float, now: datetime) -> LeaseRenewal:
    """Extend the leases of our active runs; say which we still own and which to cancel.

    A run missing from ``owned`` was taken over by another process (our lease had expired):
    we must stop executing it.
    """
    lease = now + timedelta(seconds=lease_seconds)
    rows = session.execute(
        update(Run)
        .where(Run.owner_id == owner_id, Run.status.in_(ACTIVE))
        .values(lease_expires_at=lease)
        .returning(Run.id, Run.cancel_requested)
    ).all()
    return LeaseRenewal(
        owned=frozenset(rid for rid, _ in rows),
        cancel_requested=frozenset(rid for rid, cancel in rows if cancel),
    )


def release(session: Session, owner_id: str, run_ids: Sequence[str] | None, now: datetime) -> None:
    """Expire the leases of our active runs (of ``run_ids`` only, when given), so that
    the next recovery, here or in another process, resumes them at once."""
    stmt = update(Run).where(Run.owner_id == owner_id, Run.status.in_(ACTIVE))
    if run_ids is not None:
        stmt = stmt.where(Run.id.in_(run_ids))
    session.execute(stmt.values(lease_expires_at=now))


def expired(session: Session, exclude_owner: str | None, now: datetime) -> list[str]:
    """Active runs whose owner stopped renewing its lease, oldest first.

    ``exclude_owner`` leaves out one owner's runs: a live process whose own heartbeat ran
    late must not take over (and so run twice) what it is executing itself.
    """
    return list(session.scalars(q.expired_runs(now, exclude_owner)))


def take_over(
    session: Session,
    run_id: str,
    owner_id: str,
    lease_seconds: float,
    max_attempts: int,
    now: datetime,
) -> Run | RunError | None:
    """Claim an active run whose lease expired: the run, or None if it is not ours to resume.

    Taking over a ``running`` run is a recovery: it is recorded as a ``run_resumed`` event
    naming the node runs that were in flight. ``recovery_attempts`` counts recoveries in a
    row without progress (no node run completed since the previous recovery), so a run
    whose process keeps dying on the same node is failed after ``max_attempts`` of them,
    while a run that merely shared a process with it keeps going. The row is locked
    (``FOR UPDATE`` on Postgres, ``BEGIN IMMEDIATE`` on SQLite): two processes never both
    take over one run.

    Past ``max_attempts``, the error to fail the run with is returned instead: the caller
    ends the run once this transaction has stored the count.
    """
    run = session.get(Run, run_id, with_for_update=True)
    if run is None or run.status not in ACTIVE:
        return None
    if run.lease_expires_at is not None and run.lease_expires_at >= now:
        return None
    run.owner_id = owner_id
    run.lease_expires_at = now + timedelta(seconds=lease_seconds)
    if run.status != RunStatus.RUNNING:
        return run  # a queued run never started: nothing was interrupted
    in_flight = _in_flight(session, run_id)
    run.recovery_attempts = (
        1 if _progressed_since_resume(session, run_id) else run.recovery_attempts + 1
    )
    attempts = run.recovery_attempts
    session.flush()
    if attempts > max_attempts:
        return RunError.recovery_limit(in_flight, attempts, max_attempts)
    add_event(
        session,
        run_id,
        "run_resumed",
        {
            "recovery_attempt": attempts,
            "interrupted": [{"node": n, "node_run_id": a} for a, n in in_flight],
            "resumed_at": now.isoformat(),
        },
    )
    return run


def _in_flight(session: Session, run_id: str) -> list[tuple[str, str]]:
    """(node run id, node) of the node runs started but not ended, in start order."""
    return [(a, n) for a, n in session.execute(q.in_flight(run_id))]


def _progressed_since_resume(session: Session, run_id: str) -> bool:
    """True when a node run completed after the latest ``run_resumed`` event."""
    last_resume = session.scalar(q.last_resume_seq(run_id))
    if last_resume is None:
        return False  # first recovery: counts as one attempt
    return session.scalar(q.progressed_since(run_id, last_resume)) is not None
