"""The FastAPI application: ``create_app(settings)`` wires storage, workflows, runner, routes."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from service.api import methods, security
from service.api.body_limit import BodyLimitMiddleware
from service.api.capacity import StreamSlots
from service.api.catalog import Catalog
from service.api.routes import graphs, health, maintenance, metrics, runs
from service.errors import DatabaseUnavailableError, ServiceError
from service.observability import observers_for
from service.observability.http import HttpMetricsMiddleware
from service.observability.metrics import AppMetrics
from service.runtime.observers import RunObserver
from service.runtime.registry import discover
from service.runtime.runner import RunManager
from service.runtime.shutdown import DrainGuard, drain_on_signals
from service.runtime.streams import Notifier
from service.runtime.sweeper import sweeper_for
from service.settings import Settings
from service.storage.migrations import upgrade
from service.storage.records import database_outage, outage_reason
from service.storage.sql import SqlRunStore
from service.ui import routes as ui
from service.webhooks import deliverer_for

log = logging.getLogger("graphflow.service")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Migrate the DB, load workflows, start the runner (resuming orphaned runs), the
    webhook deliverer and the retention sweeper; stop them."""
    settings: Settings = app.state.settings
    store = SqlRunStore(
        settings.database_url, pool_size=settings.db_pool_size, announce_as=settings.owner_id
    )
    try:
        await run_in_threadpool(upgrade, store.write_engine)
        workflows = await run_in_threadpool(discover, settings.workflow_packages)
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        webhooks = deliverer_for(store, settings)  # None: no secret, or ``graphflow api``
        runner = RunManager(
            store,
            workflows,
            settings,
            notifier.notify,
            notifier.notify_many,
            observers=[*observers_for(settings), *app.state.observers],
            wake_webhooks=None if webhooks is None else webhooks.wake,
        )
        app.state.store = store
        app.state.catalog = Catalog(workflows)
        app.state.notifier = notifier
        app.state.runner = runner
        app.state.webhooks = webhooks
        await run_in_threadpool(runner.start)
        if webhooks is not None:
            webhooks.start()
        sweeper = sweeper_for(store, settings)  # None: runs kept forever, or ``graphflow api``
        if sweeper is not None:
            sweeper.start()
        # What start-up made (modules, mappers, models, graphs) lives as long as the process.
        # Frozen, the collector's full passes skip it: unfrozen, a full pass during a 2,000-node
        # run took a third of that run's time (bench/service_bench.py, map).
        gc.freeze()
        drain_on_signals(runner, settings.shutdown_grace_seconds)  # 503s while draining
        try:
            yield
        finally:
            if sweeper is not None:  # first: the drain has the database to itself
                await run_in_threadpool(sweeper.stop)
            await run_in_threadpool(runner.stop, settings.shutdown_grace_seconds)
            if webhooks is not None:  # after the runner: what it ended in the grace is queued
                await run_in_threadpool(webhooks.stop)
    finally:
        store.close()


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    if (outage := database_outage(exc)) is not None:
        # The driver's text (hosts, users, paths) stays in the log.
        reason = outage_reason(outage)
        log.warning("%s: %s", reason, getattr(outage, "orig", None) or outage)
        return await _service_error(request, DatabaseUnavailableError(reason))
    log.error("unhandled error", exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def create_app(
    settings: Settings | None = None, *, observers: Sequence[RunObserver] = ()
) -> FastAPI:
    """Build the app; ``settings`` default to the ``GRAPHFLOW_*`` environment. ``observers``
    see its runs besides those the settings ask for (``service.observability``).

    Raises pydantic's ``ValidationError`` for invalid settings (e.g. CORS ``*`` with credentials).
    """
    settings = settings or Settings()
    app = FastAPI(
        title="GraphFlow",
        version="0.1.0",
        summary="Run registered GraphFlow graphs durably; poll or stream their progress.",
        lifespan=lifespan,
        docs_url=None,  # served offline by service.ui (no CDN); ReDoc is not served
        redoc_url=None,
    )
    app.state.settings = settings
    # Per app, not the process-wide registry: apps in one process keep their own counts.
    app.state.metrics = AppMetrics(app.state)
    app.state.observers = [*observers, app.state.metrics.observer]
    app.state.stream_slots = StreamSlots(settings.max_streams)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(HTTPException, methods.http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(methods.LiteralPathMethods)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(DrainGuard)  # 503 to new runs while shutting down
    security.install(app, settings)  # outside the body limit: unauthenticated bodies are not read
    # Outermost: 401s and 503s answered before routing are counted too.
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.metrics, routes=app.router.routes)
    app.include_router(health.router)
    app.include_router(graphs.router)
    app.include_router(runs.router)
    app.include_router(maintenance.router)
    app.include_router(metrics.router)
    ui.install(app)  # /ui dashboard and /docs, from files in the packages
    return app
