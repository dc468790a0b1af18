"""Runs: create, inspect, list, cancel and stream events."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from service import operations
from service.deps import CatalogDep, NotifierDep, RunnerDep, SettingsDep, StoreDep
from service.errors import RunNotFoundError
from service.schemas import ErrorPublic, RunCreate, RunList, RunPublic, RunStatus
from service.store import TERMINAL
from service.streams import run_event_stream, wait_until_finished

router = APIRouter(tags=["runs"])

_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (404, 409, 413)
}


@router.post(
    "/graphs/{name}/runs",
    operation_id="create_run",
    status_code=202,
    response_model=RunPublic,
    responses={200: {"model": RunPublic}, **_errors},
)
async def create_run(
    name: str,
    body: RunCreate,
    response: Response,
    store: StoreDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    notifier: NotifierDep,
    settings: SettingsDep,
    wait: Annotated[bool, Query(description="Wait for the run to end (bounded).")] = False,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> RunPublic:
    """Start a run of a graph (202), or return the run an Idempotency-Key already made (200)."""
    result = await run_in_threadpool(
        operations.create_run, store, catalog, runner, settings, name, body, idempotency_key
    )
    run = result.run
    if wait and run.status not in TERMINAL:
        await wait_until_finished(store, notifier, run.id, settings.run_wait_timeout)
        run = await run_in_threadpool(operations.get_run, store, run.id)
    response.headers["Location"] = f"/runs/{run.id}"
    finished = run.status in TERMINAL
    response.status_code = 200 if (not result.created or (wait and finished)) else 202
    return run


@router.get("/runs", operation_id="list_runs", response_model=RunList)
def list_runs(
    store: StoreDep,
    graph: str | None = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size, at most 100.")] = 20,
    cursor: str | None = None,
) -> RunList:
    """List runs newest first, paginated with an opaque cursor."""
    return operations.list_runs(store, graph=graph, status=status, limit=limit, cursor=cursor)


@router.get(
    "/runs/{run_id}",
    operation_id="get_run",
    response_model=RunPublic,
    responses={404: {"model": ErrorPublic}},
)
def get_run(run_id: uuid.UUID, store: StoreDep) -> RunPublic:
    """Get a run with its node runs."""
    return operations.get_run(store, run_id)


@router.post(
    "/runs/{run_id}/cancel",
    operation_id="cancel_run",
    response_model=RunPublic,
    responses={202: {"model": RunPublic}, **_errors},
)
def cancel_run(
    run_id: uuid.UUID, response: Response, store: StoreDep, runner: RunnerDep
) -> RunPublic:
    """Cancel a run: nothing new starts and it ends cancelled (202 while it winds down)."""
    run = operations.cancel_run(store, runner, run_id)
    response.status_code = 200 if run.status in TERMINAL else 202
    return run


@router.get(
    "/runs/{run_id}/events",
    operation_id="stream_run_events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-sent events of the run, ending after the terminal one.",
        },
        404: {"model": ErrorPublic},
    },
)
async def stream_run_events(
    run_id: uuid.UUID,
    store: StoreDep,
    notifier: NotifierDep,
    settings: SettingsDep,
    after: Annotated[int | None, Query(ge=0, description="Resume after this event id.")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Stream the run's events (past ones first, then live) as server-sent events."""
    rid = str(run_id)
    if await run_in_threadpool(store.get_run, rid) is None:
        raise RunNotFoundError(rid)
    start = operations.event_start(last_event_id, after)
    return EventSourceResponse(
        run_event_stream(store, notifier, rid, start, settings.sse_keepalive_seconds),
        ping=settings.sse_keepalive_seconds,
        headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"},
    )
