"""Graceful shutdown: drain the runner while still answering HTTP, then let uvicorn exit.

Left to itself, uvicorn closes its listening socket on SIGTERM and only then shuts the app down:
clients could not be told why their requests fail, and open event streams would hold the process
until its graceful timeout. Instead, on SIGTERM or SIGINT the process

1. refuses new runs with 503 (``DrainGuard``; ``/readyz`` answers 503 as well),
2. starts no new node and lets the nodes in flight finish, for at most
   ``GRAPHFLOW_SHUTDOWN_GRACE_SECONDS``,
3. releases its leases, so the next process resumes at once what did not finish,
4. ends open event streams and hands the signal to uvicorn, which exits.

A second signal hands over to uvicorn at once.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from sse_starlette.sse import AppStatus
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.runtime.runner import RunManager

log = logging.getLogger("graphflow.service.shutdown")

SHUTTING_DOWN = (
    "the server is shutting down and takes no new runs; retry against another instance "
    "or once it is back"
)
_CREATE_RUN = re.compile(r"/graphs/[^/]+/runs/?")

_Handler = Callable[[int, FrameType | None], Any]


def drain_on_signals(runner: RunManager, grace_seconds: float) -> None:
    """Make SIGTERM and SIGINT drain ``runner`` before the handler installed so far runs.

    Call from the event loop's thread while the server runs (uvicorn has installed its own
    handlers by then). Does nothing outside the main thread (e.g. under ``TestClient``).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    import asyncio

    loop = asyncio.get_running_loop()
    draining = threading.Event()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def hand_over(signum: int, previous: Any = previous) -> None:
            if callable(previous):
                previous(signum, None)
            else:  # no server handler: restore the default action and re-deliver the signal
                signal.signal(signum, previous)
                signal.raise_signal(signum)

        def drain(signum: int, hand_over: Callable[[int], None] = hand_over) -> None:
            try:
                runner.stop(grace_seconds)
            except Exception:
                log.exception("draining the runner failed")
            AppStatus.should_exit = True  # sse-starlette ends every open event stream
            loop.call_soon_threadsafe(hand_over, signum)

        def on_signal(
            signum: int,
            _frame: FrameType | None,
            drain: Callable[[int], None] = drain,
            hand_over: Callable[[int], None] = hand_over,
        ) -> None:
            if draining.is_set():
                runner.hurry()
                hand_over(signum)
                return
            draining.set()
            log.warning("signal %s: draining for up to %s s", signum, grace_seconds)
            threading.Thread(
                target=drain, args=(signum,), name="graphflow-drain", daemon=True
            ).start()

        signal.signal(sig, on_signal)


class DrainGuard:
    """ASGI middleware for the drain: 503 to new runs and readiness probes, clean stream ends.

    Reads the runner from ``app.state.runner`` (set in the lifespan); passes everything through
    before that. sse-starlette cancels open event streams at shutdown without ending their
    chunked body, which clients report as a broken connection; a GET response left open while
    draining is ended here, so the stream closes cleanly and the client resumes elsewhere.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._refused(scope):
            response = JSONResponse(
                {"detail": SHUTTING_DOWN},
                status_code=503,
                headers={"Retry-After": "1", "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        if scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        body_open = False

        async def tracking_send(message: Message) -> None:
            nonlocal body_open
            if message["type"] == "http.response.start":
                body_open = True
            elif message["type"] == "http.response.body":
                body_open = bool(message.get("more_body", False))
            await send(message)

        await self.app(scope, receive, tracking_send)
        if body_open and self._draining(scope):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    def _draining(scope: Scope) -> bool:
        runner = getattr(getattr(scope.get("app"), "state", None), "runner", None)
        return isinstance(runner, RunManager) and not runner.accepting

    @classmethod
    def _refused(cls, scope: Scope) -> bool:
        if not cls._draining(scope):
            return False
        path: str = scope.get("path", "")
        if path == "/readyz":
            return True
        return scope.get("method") == "POST" and _CREATE_RUN.fullmatch(path) is not None
