"""The ``Allow`` header of a 405: every method the path takes, whichever router declares it.

Starlette answers a 405 with the methods of the first route whose path matches, so
``OPTIONS /runs/{id}`` said ``Allow: GET`` (not ``DELETE``, declared by another router), and
``OPTIONS /runs/purge`` said ``GET``: ``/runs/{run_id}`` matches it too. Here the methods come
from the OpenAPI document's paths: those that are the request's path exactly win over those
that match it through a parameter, and the methods of all the winners are listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["LiteralPathMethods", "allowed_methods", "http_error"]

_PARAMETER = re.compile(r"\\\{[^/]+?\\\}")  # a ``{name}`` segment, once escaped
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def allowed_methods(paths: Mapping[str, Iterable[str]], path: str) -> list[str]:
    """The methods (upper case, sorted) that ``paths`` (an OpenAPI document's ``paths``:
    templated path -> its operations) take at ``path``."""
    exact: set[str] = set()
    matching: set[str] = set()
    for template, operations in paths.items():
        methods = {m.upper() for m in operations if m in _METHODS}
        if template == path:
            exact |= methods
        elif re.fullmatch(_PARAMETER.sub("[^/]+", re.escape(template)), path):
            matching |= methods
    return sorted(exact or matching)


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an ``HTTPException``, a 405's ``Allow`` completed."""
    assert isinstance(exc, HTTPException)
    app: FastAPI = request.app
    if exc.status_code == 405:
        paths: dict[str, Any] = app.openapi().get("paths", {})
        allowed = allowed_methods(paths, request.url.path)
        if allowed:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
    return await http_exception_handler(request, exc)


class LiteralPathMethods:
    """Answer 405 before routing to a method that a literal path (one without parameters)
    does not take: ``GET /runs/purge`` would otherwise reach ``GET /runs/{run_id}`` and be
    refused as a malformed run id (422)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._literal: dict[str, list[str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            literal = self._literal_paths(scope["app"])
            allowed = literal.get(scope["path"])
            if allowed and scope["method"] not in allowed:
                response = JSONResponse(
                    {"detail": "Method Not Allowed"},
                    status_code=405,
                    headers={"Allow": ", ".join(allowed)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _literal_paths(self, app: FastAPI) -> dict[str, list[str]]:
        if self._literal is None:
            paths: dict[str, Any] = app.openapi().get("paths", {})
            self._literal = {
                path: allowed_methods(paths, path) for path in paths if "{" not in path
            }
        return self._literal
