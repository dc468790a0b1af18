"""``HttpMetricsMiddleware``: counts HTTP requests by route template and status, with latency.

Pure ASGI (no ``BaseHTTPMiddleware``), so event streams pass through unbuffered. The route
label is the matched route's path template (``/runs/{run_id}``), never the raw path: a raw path
carries run ids and any string a client makes up, which would grow the series without bound.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability.metrics import AppMetrics

UNMATCHED = "unmatched"  # no route has this path (404s of made-up paths)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetricsMiddleware:
    """Times each HTTP request and counts it once its response has started (or failed).

    ``routes`` is the app's live route list: requests answered before routing (a 401 of the
    API-key check, a 503 while draining) are labelled by matching it here.
    """

    def __init__(self, app: ASGIApp, metrics: AppMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before responding

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope.get("method", "")
            self.metrics.observe_request(
                method if method in _METHODS else "other",
                self._route(scope),
                status,
                time.perf_counter() - started,
            )

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            route = _match(self.routes, dict(scope))  # a copy: matching writes to the scope
        return template(route)


def _match(routes: Sequence[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The route that would serve ``scope``, looking into included routers (FastAPI keeps
    them as one entry that says whether it matches, not which of its routes does)."""
    for route in routes:
        if route.matches(scope)[0] is Match.NONE:
            continue
        inner = getattr(route, "original_router", None)
        return route if inner is None else _match(inner.routes, scope)
    return None


def template(route: object) -> str:
    """The path template of a route (a mount's prefix for what it serves), or ``unmatched``."""
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED
