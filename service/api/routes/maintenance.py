"""Maintenance of stored runs: delete one, purge many, cancel many."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from service.api import maintenance
from service.api.deps import RetentionDep, RunnerDep
from service.api.schemas import CancelRequest, ErrorPublic, PurgeRequest, RunCount
from service.api.strict_route import STRICT_RESPONSES, StrictRoute

router = APIRouter(tags=["runs"], route_class=StrictRoute, responses=STRICT_RESPONSES)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorPublic} for code in codes}


@router.delete(
    "/runs/{run_id}",
    operation_id="delete_run",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Deleted"}, **_errors(404, 409, 422)},
)
async def delete_run(run_id: uuid.UUID, retention: RetentionDep) -> Response:
    """Delete a finished run with its node runs, events and webhook deliveries.

    409 for a queued, running or interrupted run: cancel it first.
    """
    await run_in_threadpool(maintenance.delete_run, retention, run_id)
    return Response(status_code=204)


@router.post(
    "/runs/purge",
    operation_id="purge_runs",
    response_model=RunCount,
    responses=_errors(422),
)
async def purge_runs(body: PurgeRequest, retention: RetentionDep, runner: RunnerDep) -> RunCount:
    """Delete the finished runs matching every field given; count them only unless
    ``dry_run`` is false.

    Queued, running and interrupted runs are never deleted. The runs go in short batches,
    so the server keeps serving; the answer comes once all are deleted (or the server shuts
    down: then it counts those deleted so far).
    """
    return await run_in_threadpool(maintenance.purge_runs, retention, runner, body)


@router.post(
    "/runs/cancel",
    operation_id="cancel_runs",
    response_model=RunCount,
    responses=_errors(422),
)
async def cancel_runs(body: CancelRequest, retention: RetentionDep, runner: RunnerDep) -> RunCount:
    """Cancel the queued, running and interrupted runs matching every field given; count
    them only unless ``dry_run`` is false.

    Queued and interrupted runs end cancelled at once; running ones are asked to stop, and
    end cancelled once their nodes in flight return.
    """
    return await run_in_threadpool(maintenance.cancel_runs, retention, runner, body)
