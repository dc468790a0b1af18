"""Service functions behind the maintenance routes: delete one run, purge finished runs,
cancel runs in bulk.

A purge and a bulk cancel take the same filter (``RunSelection``) and, by default, only count
(``dry_run`` is true unless the body says false): a filter typed wrong costs nothing until it
is sent again meaning it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from service.api.schemas import (
    CancellableStatuses,
    CancelRequest,
    FinishedStatuses,
    PurgeRequest,
    RunCount,
)
from service.errors import ConflictError, RunNotFoundError
from service.runtime.runner import RunManager
from service.storage.filters import RunFilter
from service.storage.records import ACTIVE, TERMINAL, RunStatus
from service.storage.retention import RunRetention, cancellable_runs

__all__ = ["CANCELLABLE", "cancel_runs", "delete_run", "purge_runs"]

log = logging.getLogger("graphflow.service.maintenance")

# What a bulk cancel ends: runs that have not finished.
CANCELLABLE = (*ACTIVE, RunStatus.INTERRUPTED)


def delete_run(retention: RunRetention, run_id: uuid.UUID | str) -> None:
    """Delete a finished run with everything stored about it.

    Raises:
        RunNotFoundError: there is no such run (or it was just deleted).
        ConflictError: the run is queued, running or interrupted: it must be cancelled first.
    """
    rid = str(run_id)
    for _ in range(2):  # a second time for a run that ended between the delete and the read
        if retention.delete([rid]):
            return
        run = retention.store.get_run(rid)
        if run is None:
            raise RunNotFoundError(rid)
        if run.status not in TERMINAL:
            raise ConflictError(
                f"run {rid} is {run.status}: only finished runs can be deleted; cancel it "
                f"first (POST /runs/{rid}/cancel), then delete it"
            )
    raise ConflictError(f"run {rid} changed while it was being deleted; try again")


def purge_runs(retention: RunRetention, runner: RunManager, body: PurgeRequest) -> RunCount:
    """Delete the finished runs that match ``body`` (with ``dry_run``, count them); on SQLite,
    give the freed space back to the file system afterwards. A purge cut short by the
    server's shutdown answers how many runs it deleted: sent again, it deletes the rest."""
    run_filter = RunFilter(
        graph=body.graph,
        statuses=_statuses(body.status, TERMINAL),
        tags=body.tags,
        created_before=body.created_before,
        finished_before=body.finished_before,
    )
    if body.dry_run:
        return RunCount(count=retention.count(run_filter))
    # A shutdown ends the purge between two batches rather than wait for all of it.
    deleted = retention.purge(run_filter, runner.stopping)
    if deleted:
        freed = retention.reclaim_space(runner.stopping)
        log.info("purge: deleted %d runs (%s); %d pages freed", deleted, run_filter, freed)
    return RunCount(count=deleted)


def cancel_runs(retention: RunRetention, runner: RunManager, body: CancelRequest) -> RunCount:
    """Cancel the queued, running and interrupted runs that match ``body`` (with ``dry_run``,
    count them), each as ``POST /runs/{id}/cancel`` would: queued and interrupted ones end at
    once, running ones are asked to stop (in whichever process runs them)."""
    run_filter = RunFilter(graph=body.graph, tags=body.tags, created_before=body.created_before)
    statuses = _statuses(body.status, CANCELLABLE)
    count = 0
    for page in cancellable_runs(retention.store, run_filter, statuses):
        if not body.dry_run:
            for run_id, graph in page:
                runner.cancel(run_id, graph)
        count += len(page)
    if count and not body.dry_run:
        log.info("bulk cancel: %d runs (%s)", count, run_filter)
    return RunCount(count=count)


def _statuses(
    status: FinishedStatuses | CancellableStatuses | None, default: Sequence[RunStatus]
) -> list[RunStatus]:
    """The statuses a body asks for: one, several, or ``default`` when it names none."""
    if status is None:
        return list(default)
    names = [status] if isinstance(status, str) else status
    return [RunStatus(name) for name in dict.fromkeys(names)]
