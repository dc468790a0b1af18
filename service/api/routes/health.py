"""Liveness and readiness probes."""

from __future__ import annotations

import logging

import anyio
import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import SettingsDep, StoreDep
from service.api.schemas import ErrorPublic, HealthPublic
from service.api.strict_route import STRICT_RESPONSES, StrictRoute

log = logging.getLogger("graphflow.service.health")

router = APIRouter(tags=["health"], route_class=StrictRoute, responses=STRICT_RESPONSES)


@router.get("/healthz", operation_id="healthz", response_model=HealthPublic)
async def healthz() -> HealthPublic:
    """Report that the process is up."""
    return HealthPublic(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=HealthPublic,
    responses={503: {"model": ErrorPublic}},
)
async def readyz(store: StoreDep, settings: SettingsDep) -> HealthPublic | JSONResponse:
    """Report ready only while the database answers within GRAPHFLOW_READYZ_TIMEOUT_SECONDS."""
    timeout = settings.readyz_timeout_seconds
    try:
        with anyio.fail_after(timeout):
            # A thread cannot be interrupted: on timeout the wait is abandoned, not the ping
            # (the store lets one ping hang at a time, so abandoned threads do not pile up).
            await anyio.to_thread.run_sync(store.ping, timeout, abandon_on_cancel=True)
    except Exception:
        # The driver's message names hosts and users: it goes to the log, not to this
        # unauthenticated endpoint.
        log.warning("readiness: the database did not answer within %g s", timeout, exc_info=True)
        return JSONResponse({"detail": "database unavailable"}, status_code=503)
    return HealthPublic(status="ready")
