"""Optional bearer API keys, the OpenAPI security declaration, CORS and the bind warning.

With ``GRAPHFLOW_API_KEYS`` set, every request except the probes and the dashboard's static
files (``/ui``) needs ``Authorization: Bearer <key>``. The check is ASGI middleware rather than
a route dependency so that every route, present or future (docs and unknown paths included), is
covered by default.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import UnauthorizedError
from service.settings import Settings

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
# The dashboard's static files hold no data, and a browser cannot send a bearer key when it
# navigates: the page asks for the key and sends it with each API call it makes.
PUBLIC_PREFIXES = ("/ui/",)
PUBLIC_UI = "/ui"  # redirects to /ui/
SCHEME = "bearerAuth"


def is_public(path: str) -> bool:
    """Whether ``path`` is served without a key: the probes and the dashboard's files."""
    return path in PUBLIC_PATHS or path == PUBLIC_UI or path.startswith(PUBLIC_PREFIXES)


def key_matches(presented: bytes, keys: list[bytes]) -> bool:
    """Constant-time comparison of ``presented`` with every key (no early exit on a match)."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


def authenticate(authorization: bytes | None, keys: list[bytes]) -> None:
    """Accept ``Bearer <key>`` for one of ``keys``; raise ``UnauthorizedError`` otherwise."""
    if not authorization:
        raise UnauthorizedError("missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer" or not key_matches(token.strip(), keys):
        raise UnauthorizedError("invalid API key", invalid_token=True)


class ApiKeyMiddleware:
    """Answers 401 (with ``WWW-Authenticate``) to requests without a valid key."""

    def __init__(
        self, app: ASGIApp, keys: list[str], public_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.public_paths = public_paths  # besides ``is_public``: /metrics when so configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or is_public(scope["path"])
            or scope["path"] in self.public_paths
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        try:
            authenticate(headers.get(b"authorization"), self.keys)
        except UnauthorizedError as exc:
            await _send_error(send, exc)
            return
        await self.app(scope, receive, send)


async def _send_error(send: Send, exc: UnauthorizedError) -> None:
    body = json.dumps({"detail": exc.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install(app: FastAPI, settings: Settings) -> None:
    """Add the API-key check (when keys are set), CORS (when origins are set) and the docs."""
    keys = [key.get_secret_value() for key in settings.api_keys]
    if keys:
        # GRAPHFLOW_METRICS_PUBLIC: scrapers that cannot send a key (the counts name no run).
        public = frozenset({"/metrics"}) if settings.metrics_public else frozenset()
        app.add_middleware(ApiKeyMiddleware, keys=keys, public_paths=public)
    if settings.cors_origins:
        # Added last, so outermost: preflights need no key and 401s still carry CORS headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Location", "Retry-After"],
        )
    app.openapi = _openapi_with_security(app, required=bool(keys))  # type: ignore[method-assign]


def _openapi_with_security(app: FastAPI, *, required: bool) -> Callable[[], dict[str, Any]]:
    """Wrap ``app.openapi`` to declare the bearer scheme on every non-probe operation.

    Without keys the requirement is optional (``{}`` alternative) and no 401 is declared, so the
    document stays truthful either way while generated SDKs always know how to send a key.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "One of the keys in GRAPHFLOW_API_KEYS (when set).",
        }
        requirement: list[dict[str, list[str]]] = [{SCHEME: []}] if required else [{SCHEME: []}, {}]
        for path, operations in schema.get("paths", {}).items():
            if path in PUBLIC_PATHS:
                continue
            for operation in operations.values():
                operation["security"] = requirement
                if required:
                    operation.setdefault("responses", {})["401"] = {
                        "description": "Missing or invalid API key",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorPublic"}
                            }
                        },
                    }
        app.openapi_schema = schema
        return schema

    return openapi


def bind_warning(host: str, settings: Settings) -> str | None:
    """The warning ``graphflow serve`` logs for ``host``, or None when keys are configured."""
    if settings.api_keys:
        return None
    if _is_loopback(host):
        return (
            f"the API is unauthenticated (GRAPHFLOW_API_KEYS is not set) and bound to loopback "
            f"{host}: only this machine can reach it"
        )
    return (
        f"THE API IS UNAUTHENTICATED AND BOUND TO {host}: anyone who can reach this address can "
        "start and cancel runs. Set GRAPHFLOW_API_KEYS or bind to 127.0.0.1."
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
