"""``GET /metrics``: the app's metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from service.observability.metrics import AppMetrics

router = APIRouter(tags=["metrics"])


# Left out of the OpenAPI document: it is for Prometheus, not for API clients and their SDKs.
@router.get("/metrics", operation_id="metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Render this app's registry (rendering counts runs in the database: off the loop)."""
    app_metrics: AppMetrics = request.app.state.metrics
    body = await run_in_threadpool(app_metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
