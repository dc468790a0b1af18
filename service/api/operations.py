"""Service functions behind the routes: create, read, list and cancel runs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.api.catalog import Catalog
from service.api.schemas import (
    InterruptPublic,
    NodeRunPublic,
    RunCreate,
    RunErrorPublic,
    RunList,
    RunPublic,
    RunSummaryPublic,
    WebhookDeliveryPublic,
    WebhookPublic,
)
from service.errors import (
    ConflictError,
    DeadlineTooLongError,
    InvalidCursorError,
    InvalidInputError,
    InvalidWebhookError,
    RunNotFoundError,
)
from service.runtime.registry import RegisteredWorkflow
from service.runtime.runner import RunManager
from service.settings import Settings
from service.storage.base import RunStore
from service.storage.filters import RunFilter
from service.storage.records import TERMINAL, RunStatus
from service.storage.tables import Run, new_run_values, values_of
from service.webhooks import check_webhook_url

# Event ids are 32-bit integers in the database; larger resume points would overflow the query.
MAX_EVENT_ID = 2**31 - 1
# The columns a queued run's row does not set yet.
_NOT_STARTED = {
    "started_at": None,
    "finished_at": None,
    "output": None,
    "error": None,
    "interrupts": None,
}


@dataclass(frozen=True)
class Created:
    run: RunPublic
    created: bool


def _duration_ms(started_at: datetime | None, finished_at: datetime | None) -> float | None:
    if started_at is None or finished_at is None:
        return None
    return (finished_at - started_at).total_seconds() * 1000


# Views are built from plain column mappings (``values_of`` for ORM rows): the runner keeps a
# finished run's rows as dicts, and building ORM instances just to read them back is costly.
# A run may have thousands of node runs, whose values the store typed already: they are not
# validated again (``model_construct``).
def node_run_public(row: Mapping[str, Any]) -> NodeRunPublic:
    error = row["error"]
    return NodeRunPublic.model_construct(
        id=row["activation_id"],
        node=row["node"],
        status=row["status"],
        attempt=row["attempt"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_ms=row["duration_ms"],
        error=RunErrorPublic.model_construct(**error) if error else None,
    )


def run_public(
    run: Mapping[str, Any],
    nodes: Iterable[Mapping[str, Any]],
    deliveries: Iterable[Mapping[str, Any]] = (),
) -> RunPublic:
    interrupts = run["interrupts"]
    url = run.get("webhook_url")
    return RunPublic(
        **_summary_fields(run),
        input=run["input"],
        output=run["output"],
        nodes=[node_run_public(n) for n in nodes],
        interrupts=None if interrupts is None else [InterruptPublic(**i) for i in interrupts],
        webhook=None
        if url is None
        else WebhookPublic(url=url, deliveries=[WebhookDeliveryPublic(**d) for d in deliveries]),
        timeout_seconds=run.get("timeout_seconds"),
        queue_timeout_seconds=run.get("queue_timeout_seconds"),
        deadline_at=run.get("deadline_at"),
        queue_deadline_at=run.get("queue_deadline_at"),
    )


def run_summary(run: Mapping[str, Any]) -> RunSummaryPublic:
    return RunSummaryPublic(**_summary_fields(run))


def _summary_fields(run: Mapping[str, Any]) -> dict[str, Any]:
    error = run["error"]
    return {
        "id": run["id"],
        "graph": run["graph"],
        "graph_version": run.get("graph_version"),
        "status": run["status"],
        "created_at": run["created_at"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "duration_ms": _duration_ms(run["started_at"], run["finished_at"]),
        "error": RunErrorPublic(**error) if error else None,
        # Runs made before metadata and tags have NULL.
        "metadata": run.get("run_metadata") or {},
        "tags": run.get("tags") or [],
    }


def get_run(store: RunStore, run_id: uuid.UUID | str) -> RunPublic:
    rid = str(run_id)
    run = store.get_run(rid)
    if run is None:
        raise RunNotFoundError(rid)
    deliveries = store.webhook_deliveries(rid) if run.webhook_url is not None else []
    return run_public(values_of(run), map(values_of, store.node_runs(rid)), deliveries)


async def create_run(
    store: RunStore,
    catalog: Catalog,
    runner: RunManager,
    settings: Settings,
    graph: str,
    body: RunCreate,
    idempotency_key: str | None,
    watch: bool = False,
) -> Created:
    """Validate the input against the graph, store a queued run and hand it to the runner.

    With ``watch``, the runner keeps the run's view when it ends (see ``result_of``). With an
    ``idempotency_key`` already used, the existing run is returned (``created=False``);
    reusing a key for another graph or input is a conflict. Raises ``GraphNotFoundError``,
    ``InvalidInputError``, ``DeadlineTooLongError`` (``timeout_seconds`` above
    GRAPHFLOW_MAX_RUN_SECONDS), ``ConflictError`` and, when ``max_active_runs`` runs are queued or
    running, ``TooManyActiveRunsError`` (a retried key still gets its run back).

    Without a key, nothing here waits on a thread: the row is stored by the journal writer's
    next batch, which also checks the cap.
    """
    wf = catalog.get(graph)
    validated = validate_input(wf, body.input)
    check_deadline(settings, body.timeout_seconds)
    webhook = None
    if body.webhook is not None:
        webhook = await run_in_threadpool(webhook_url, settings, body.webhook)  # resolves DNS
    if idempotency_key is not None:
        existing = await run_in_threadpool(_existing_run, store, graph, validated, idempotency_key)
        if existing is not None:
            return Created(run=existing, created=False)
    values = new_run_values(
        run_id=str(uuid.uuid4()),
        graph=graph,
        input=validated,
        max_concurrent=body.max_concurrent,
        idempotency_key=idempotency_key,
        # Run here if this process executes runs; else by whichever worker claims it first.
        owner_id=settings.owner_id if runner.executes else None,
        lease_seconds=settings.lease_seconds,
        webhook_url=webhook,
        graph_version=wf.version,
        timeout_seconds=body.timeout_seconds,
        queue_timeout_seconds=body.queue_timeout_seconds,
        run_metadata=body.metadata,
        tags=body.tags,
    )
    if await asyncio.wrap_future(runner.create(values)):
        if watch:
            runner.watch(values["id"])
        if runner.executes:
            runner.submit(values["id"])
        # As stored: nothing to read back.
        return Created(run=run_public(values | _NOT_STARTED, []), created=True)
    # The key was taken since we looked: that run is the answer.
    assert idempotency_key is not None
    existing = await run_in_threadpool(_existing_run, store, graph, validated, idempotency_key)
    if existing is None:  # pragma: no cover - the key's run was deleted in between
        raise ConflictError(f"Idempotency-Key {idempotency_key!r} is in use; retry")
    return Created(run=existing, created=False)


def validate_input(
    wf: RegisteredWorkflow, run_input: dict[str, Any], field: str = "input"
) -> dict[str, Any]:
    """The input as the graph's input model makes it.

    Raises:
        InvalidInputError: pydantic's errors, each ``loc`` under ``["body", field]`` (the
            request's field that held the input), as FastAPI's own 422s locate theirs.
    """
    try:
        return wf.validate_input(run_input)
    except ValidationError as exc:
        errors = json.loads(exc.json(include_url=False))
        for error in errors:
            error["loc"] = ["body", field, *error.get("loc", [])]
        raise InvalidInputError(errors) from exc


def check_deadline(settings: Settings, timeout_seconds: float | None) -> None:
    """Raises ``DeadlineTooLongError`` when ``timeout_seconds`` exceeds the service's cap,
    GRAPHFLOW_MAX_RUN_SECONDS: a run cannot be granted more than any run may have."""
    cap = settings.max_run_seconds
    if timeout_seconds is not None and cap is not None and timeout_seconds > cap:
        raise DeadlineTooLongError(timeout_seconds, cap)


def webhook_url(settings: Settings, url: str) -> str:
    """The URL a run's webhook goes to, checked (``service.webhooks.urls``).

    Raises:
        InvalidWebhookError: the server signs no webhooks, or the URL is refused.
    """
    if settings.webhook_secret is None:
        raise InvalidWebhookError(
            "",
            "this server sends no webhooks: set GRAPHFLOW_WEBHOOK_SECRET (the key that signs "
            "them) to enable them",
        )
    return check_webhook_url(url, settings.webhook_allow_hosts)


def _existing_run(
    store: RunStore, graph: str, validated: dict[str, Any], idempotency_key: str
) -> RunPublic | None:
    """The run made earlier with ``idempotency_key``, or None. Raises ``ConflictError`` when
    it was made for another graph or input."""
    existing = store.get_run_by_idempotency_key(idempotency_key)
    if existing is None:
        return None
    if existing.graph != graph or existing.input != validated:
        raise ConflictError(
            f"Idempotency-Key {idempotency_key!r} was already used for run {existing.id} "
            "with a different graph or input"
        )
    return get_run(store, existing.id)


def result_of(runner: RunManager, run_id: str) -> RunPublic | None:
    """The view of a watched run that ended in this process, as stored, without reading it
    back; None otherwise (then ``get_run``). Stops watching it either way."""
    result = runner.take_result(run_id)
    if result is None:
        return None
    run, rows = result
    return run_public(run, rows)


def encode_cursor(run: Run) -> str:
    return cursor_for(run.created_at, run.id)


def cursor_for(created_at: datetime, run_id: str) -> str:
    """The opaque cursor of the page after the run created at ``created_at`` with ``run_id``."""
    raw = json.dumps([created_at.isoformat(), run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, run_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(run_id, str):
            raise ValueError("bad cursor")
        return when, str(uuid.UUID(run_id))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursorError() from exc


def list_runs(store: RunStore, where: RunFilter, *, limit: int, cursor: str | None) -> RunList:
    """A page of the runs ``where`` selects, newest first, after ``cursor``'s position.

    Raises:
        InvalidCursorError: ``cursor`` is not a ``next_cursor`` this service made.
    """
    before = decode_cursor(cursor) if cursor else None
    rows = store.list_runs(where, limit=limit + 1, before=before)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return RunList(items=[run_summary(values_of(r)) for r in page], next_cursor=next_cursor)


def cancel_run(store: RunStore, runner: RunManager, run_id: uuid.UUID) -> RunPublic:
    """Cancel a queued or running run; cancelling an ended run is a conflict (409)."""
    rid = str(run_id)
    run = store.get_run(rid)
    if run is None:
        raise RunNotFoundError(rid)
    if run.status == RunStatus.CANCELLED:
        return get_run(store, rid)
    if run.status in TERMINAL:
        raise ConflictError(f"run {rid} already {run.status}; it cannot be cancelled")
    runner.cancel(rid, run.graph)
    return get_run(store, rid)


def event_start(last_event_id: str | None, after: int | None) -> int:
    """Seq to resume after: ``?after=`` wins over ``Last-Event-ID``; garbage means 0.

    Values beyond ``MAX_EVENT_ID`` are clamped to it (no such event exists).
    """
    if after is not None:
        return min(after, MAX_EVENT_ID)
    if last_event_id:
        try:
            return min(max(0, int(last_event_id.strip())), MAX_EVENT_ID)
        except ValueError:
            return 0
    return 0
