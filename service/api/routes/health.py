"""Liveness and readiness probes."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import StoreDep
from service.api.schemas import ErrorPublic, HealthPublic
from service.api.strict_route import STRICT_RESPONSES, StrictRoute

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
async def readyz(store: StoreDep) -> HealthPublic | JSONResponse:
    """Report ready only while the database answers."""
    try:
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(store.ping)
    except Exception as exc:
        return JSONResponse({"detail": f"database unavailable: {exc}"}, status_code=503)
    return HealthPublic(status="ready")
