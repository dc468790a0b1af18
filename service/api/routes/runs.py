"""Runs: create, inspect, list, cancel, resume, retry, fork and stream events."""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from service.api import continuations, operations, search
from service.api.capacity import SlotEventSourceResponse
from service.api.deps import (
    CatalogDep,
    NotifierDep,
    RunnerDep,
    SettingsDep,
    StoreDep,
    StreamSlotsDep,
)
from service.api.schemas import (
    MAX_TAGS,
    ErrorPublic,
    ForkRequest,
    ResumeRequest,
    RunCreate,
    RunList,
    RunPublic,
    Tag,
    Timestamp,
)
from service.api.strict_route import QUERY_PREFIXES, STRICT_RESPONSES, StrictRoute
from service.errors import RunNotFoundError
from service.runtime.streams import run_event_stream, wait_until_finished
from service.storage.records import SETTLED, TERMINAL, RunStatus

router = APIRouter(tags=["runs"], route_class=StrictRoute, responses=STRICT_RESPONSES)
# The routes are ``async`` and hand only their storage work to the thread pool: FastAPI runs a
# plain ``def`` route in the pool and then validates its answer in the pool again.


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorPublic} for code in codes}


# One server-sent event as clients parse it; ``data`` is the event's JSON payload, encoded.
_SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The event's seq, for Last-Event-ID."},
        "event": {"type": "string", "description": "run_started, node_completed, ..."},
        "data": {"type": "string", "description": "JSON-encoded payload."},
    },
    "required": ["id", "event", "data"],
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying."}}
_TOO_MANY_RUNS = {"model": ErrorPublic, "headers": _RETRY_AFTER, "description": "Too many runs"}
# Printable text only: NUL and control characters cannot be stored in Postgres text columns.
_TEXT = r"^[^\x00-\x1f\x7f]*$"


@router.post(
    "/graphs/{name}/runs",
    operation_id="create_run",
    status_code=202,
    response_model=RunPublic,
    responses={
        200: {"model": RunPublic},
        **_errors(404, 409, 413, 422),
        429: _TOO_MANY_RUNS,
    },
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
    idempotency_key: Annotated[str | None, Header(max_length=255, pattern=_TEXT)] = None,
) -> RunPublic:
    """Start a run of a graph (202), or return the run an Idempotency-Key already made (200).

    With ``?wait=true`` it answers once the run ends or is interrupted (or the wait's bound
    passes).
    """
    result = await operations.create_run(
        store, catalog, runner, settings, name, body, idempotency_key, wait
    )
    run = result.run
    if wait and run.status not in SETTLED:
        try:
            active = result.created  # just created here: not ended yet
            await wait_until_finished(
                store,
                notifier,
                run.id,
                settings.run_wait_timeout,
                active=active,
                poll_seconds=settings.poll_seconds,
            )
        finally:
            ended = operations.result_of(runner, run.id)  # and stop watching it
        if ended is None:
            ended = await run_in_threadpool(operations.get_run, store, run.id)
        run = ended
    response.headers["Location"] = f"/runs/{run.id}"
    settled = run.status in SETTLED
    response.status_code = 200 if (not result.created or (wait and settled)) else 202
    return run


@router.get(
    "/runs",
    operation_id="list_runs",
    response_model=RunList,
    openapi_extra={QUERY_PREFIXES: [search.METADATA_PREFIX]},
)
async def list_runs(
    request: Request,
    store: StoreDep,
    graph: Annotated[str | None, Query(max_length=200, pattern=_TEXT)] = None,
    status: RunStatus | None = None,
    tag: Annotated[
        list[Tag] | None,
        Query(
            max_length=MAX_TAGS,
            description=f"Runs with this tag; repeated: with all of them (at most {MAX_TAGS}).",
        ),
    ] = None,
    created_after: Annotated[
        Timestamp | None,
        Query(description="Runs created after this time (ISO 8601, with its time zone)."),
    ] = None,
    created_before: Annotated[
        Timestamp | None,
        Query(description="Runs created before this time (ISO 8601, with its time zone)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size, at most 100.")] = 20,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            description="The next_cursor of a previous page, unchanged (opaque).",
            json_schema_extra={"format": "cursor"},
        ),
    ] = None,
) -> RunList:
    """List runs newest first, paginated with an opaque cursor; the parameters given narrow
    the list, each to the runs that match it.

    ``metadata.<key>=<value>`` (any number, one per key) keeps the runs whose metadata has
    ``value`` at the top-level ``key``: a string as it is, any other value as JSON
    (``metadata.attempt=3`` finds ``{"attempt": 3}``); values longer than 1,024 bytes are not
    searchable. An empty key is a 400.
    """
    where = search.run_filter(
        graph=graph,
        status=status,
        tags=tag or (),
        params=request.query_params.multi_items(),
        created_after=created_after,
        created_before=created_before,
    )
    return await run_in_threadpool(
        functools.partial(operations.list_runs, store, where, limit=limit, cursor=cursor)
    )


@router.get(
    "/runs/{run_id}",
    operation_id="get_run",
    response_model=RunPublic,
    responses={404: {"model": ErrorPublic}},
)
async def get_run(run_id: uuid.UUID, store: StoreDep) -> RunPublic:
    """Get a run with its node runs."""
    return await run_in_threadpool(operations.get_run, store, run_id)


@router.post(
    "/runs/{run_id}/cancel",
    operation_id="cancel_run",
    response_model=RunPublic,
    responses={202: {"model": RunPublic}, **_errors(404, 409)},
)
async def cancel_run(
    run_id: uuid.UUID, response: Response, store: StoreDep, runner: RunnerDep
) -> RunPublic:
    """Cancel a run: nothing new starts and it ends cancelled (202 while it winds down)."""
    run = await run_in_threadpool(operations.cancel_run, store, runner, run_id)
    response.status_code = 200 if run.status in TERMINAL else 202
    return run


@router.post(
    "/runs/{run_id}/resume",
    operation_id="resume_run",
    status_code=202,
    response_model=RunPublic,
    responses={**_errors(404, 409, 422), 429: _TOO_MANY_RUNS},
)
async def resume_run(
    run_id: uuid.UUID,
    body: ResumeRequest,
    store: StoreDep,
    runner: RunnerDep,
    settings: SettingsDep,
) -> RunPublic:
    """Give an interrupted run the values its waiting nodes asked for; it is queued again.

    ``values`` maps interrupt ids (see the run's ``interrupts``) to values; ``value`` is the
    value when exactly one node waits. Nodes left without a value ask again. 409 if the run is
    not interrupted, 422 for an id it does not wait on.
    """
    return await run_in_threadpool(continuations.resume_run, store, runner, settings, run_id, body)


@router.post(
    "/runs/{run_id}/retry",
    operation_id="retry_run",
    status_code=202,
    response_model=RunPublic,
    responses={**_errors(404, 409), 429: _TOO_MANY_RUNS},
)
async def retry_run(
    run_id: uuid.UUID,
    store: StoreDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    settings: SettingsDep,
) -> RunPublic:
    """Queue a failed, cancelled or timed-out run again under its id (409 for any other
    status).

    Its completed node runs are replayed, not run again; the failed node runs again with the
    next attempt number. It goes on with the graph's version loaded now, with a fresh deadline.
    Its event stream goes on with ``run_retried``.
    """
    return await run_in_threadpool(
        continuations.retry_run, store, catalog, runner, settings, run_id
    )


@router.post(
    "/runs/{run_id}/fork",
    operation_id="fork_run",
    status_code=201,
    response_model=RunPublic,
    responses={**_errors(404, 409, 422), 429: _TOO_MANY_RUNS},
)
async def fork_run(
    run_id: uuid.UUID,
    body: ForkRequest,
    response: Response,
    store: StoreDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    settings: SettingsDep,
) -> RunPublic:
    """Start a new run from one of this run's node runs, on its input patched.

    The node runs that completed before ``from_node_run`` are reused; it and everything after
    it run again. 404 for a node run the source run does not have, 409 while the source run is
    queued or running, 422 for an input the graph refuses.
    """
    run = await run_in_threadpool(
        continuations.fork_run, store, catalog, runner, settings, run_id, body
    )
    response.headers["Location"] = f"/runs/{run.id}"
    return run


@router.get(
    "/runs/{run_id}/events",
    operation_id="stream_run_events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
            "description": "Server-sent events of the run, ending after the terminal one.",
        },
        404: {"model": ErrorPublic},
        503: {"model": ErrorPublic, "headers": _RETRY_AFTER, "description": "Too many streams"},
    },
)
async def stream_run_events(
    run_id: uuid.UUID,
    store: StoreDep,
    notifier: NotifierDep,
    settings: SettingsDep,
    slots: StreamSlotsDep,
    after: Annotated[
        int | None,
        Query(ge=0, le=operations.MAX_EVENT_ID, description="Resume after this event id."),
    ] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Stream the run's events (past ones first, then live) as server-sent events.

    The stream ends after the run ends or is interrupted; after a resume or retry, reconnect
    with ``Last-Event-ID`` to follow it on. Holds one of ``max_streams`` slots until the
    stream ends or the client disconnects.
    """
    rid = str(run_id)
    if await run_in_threadpool(store.get_run, rid) is None:
        raise RunNotFoundError(rid)
    start = operations.event_start(last_event_id, after)
    slot = slots.acquire()
    return SlotEventSourceResponse(
        run_event_stream(store, notifier, rid, start, settings.poll_seconds),
        slot=slot,
        ping=settings.sse_keepalive_seconds,
        headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"},
    )
