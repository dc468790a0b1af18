"""ASGI middleware rejecting request bodies over a byte limit with 413, without reading them.

A ``Content-Length`` over the limit is refused before any body byte is read. Bodies without a
length (chunked) are counted while the app receives them; at the limit the 413 is sent at once,
the app sees a disconnect, and anything it tries to send afterwards is dropped.

Not starlette's ``RequestBodyLimitMiddleware`` (1.6+): for a declared ``Content-Length`` over the
limit it replaces whatever the app answers with a plain-text "Content Too Large", so the API's one
error shape (``{"detail": ...}`` naming the limit and its setting) could not be kept.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLargeError


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": PayloadTooLargeError.for_limit(limit).detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Answers 413 to request bodies over ``max_body_bytes`` (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.limit
            except ValueError:
                too_big = False
            if too_big:
                await _send_413(send, self.limit)
                return

        state: dict[str, Any] = {"received": 0, "rejected": False, "started": False}

        async def limited_receive() -> Message:
            if state["rejected"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["rejected"] = True
                    if not state["started"]:
                        await _send_413(send, self.limit)
                        state["started"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["rejected"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
