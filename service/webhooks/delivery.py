"""Sends the outbox's webhooks: ``WebhookDeliverer``, one daemon thread per executing process.

Each round:

1. claim a small batch of due deliveries (``WebhookOutbox.claim_due``), for long enough to
   send them all, so another process does not send them meanwhile;
2. for each, check its URL again and resolve it (``resolve_for_delivery``: the name may point
   elsewhere since the run was created), then POST the signed payload to the address that was
   checked, with the URL's own ``Host`` (and TLS server name), never following redirects;
3. record the attempt: a 2xx answer delivers it; anything else (another status, a connection
   error, a timeout, a refused address) is retried after an exponential backoff with jitter
   (``backoff_seconds``), until ``GRAPHFLOW_WEBHOOK_MAX_ATTEMPTS`` attempts fail it;
4. sleep until the next delivery is due or ``poll_seconds`` pass, whichever is sooner, or
   until ``wake()`` (a run just ended here).

Runs never wait for webhooks. Deliveries are rows: they survive restarts, and a claim left by a
process that died lapses and is sent again, so receivers may see a delivery twice and should
dedupe by its ``GraphFlow-Delivery`` id. A database error in a round is logged and the round
retried; it never ends the thread.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import httpx

from service.errors import InvalidWebhookError
from service.settings import Settings
from service.storage.outbox import DueDelivery, WebhookOutbox
from service.storage.sql import SqlRunStore
from service.storage.tables import utcnow
from service.webhooks.signing import SIGNATURE_HEADER, sign
from service.webhooks.urls import Resolver, resolve_for_delivery, system_resolve

__all__ = ["USER_AGENT", "WebhookDeliverer", "backoff_seconds", "deliverer_for", "payload"]

log = logging.getLogger("graphflow.service.webhooks")

USER_AGENT = "graphflow-webhooks"
BATCH_SIZE = 10
_MAX_ERROR_CHARS = 200
_MIN_WAIT_SECONDS = 0.01
# Its own generator: the jitter must not draw from (and so disturb) the global ``random`` state
# that other code, and Hypothesis in tests, relies on.
_jitter = random.Random()


def payload(delivery: DueDelivery) -> dict[str, Any]:
    """The JSON body of ``delivery``: ``{"event", "delivery_id", "run": {...}}``.

    The run's status, output, error and interrupts are those of the event reported (the run
    may have been resumed or retried since); its id, graph and times come from the run row,
    except ``finished_at`` and ``duration_ms``, which the event's data has when it ended then.
    """
    data = delivery.data
    return {
        "event": delivery.event,
        "delivery_id": delivery.id,
        "run": {
            "id": delivery.run_id,
            "graph": delivery.graph,
            "status": data.get("status", delivery.event.removeprefix("run_")),
            "created_at": _iso(delivery.created_at),
            "started_at": _iso(delivery.started_at),
            "finished_at": data.get("finished_at", _iso(delivery.finished_at)),
            "duration_ms": data.get("duration_ms", _duration_ms(delivery)),
            "error": data.get("error"),
            "output": data.get("output"),
            "interrupts": data.get("interrupts"),
        },
    }


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """The wait after ``attempts`` failed attempts: ``base * 2**(attempts - 1)``, at most
    ``cap``, scaled by a random factor in [0.5, 1] so that receivers coming back up are not
    hit by every retry at once."""
    return min(cap, base * 2.0 ** min(attempts - 1, 64)) * _jitter.uniform(0.5, 1.0)


def deliverer_for(store: SqlRunStore, settings: Settings) -> WebhookDeliverer | None:
    """The deliverer a process should run: None when it executes no runs (``graphflow api``)
    or has no ``GRAPHFLOW_WEBHOOK_SECRET`` (runs cannot ask for webhooks then)."""
    if not settings.role.executes or settings.webhook_secret is None:
        return None
    return WebhookDeliverer(store, settings)


class WebhookDeliverer:
    """Delivers the webhooks of ``store``'s outbox in a daemon thread: ``start()``, ``wake()``
    when a delivery was queued, ``stop()``. ``resolve`` is the host resolver (tests)."""

    def __init__(
        self,
        store: SqlRunStore,
        settings: Settings,
        *,
        resolve: Resolver = system_resolve,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        """Raises ``ValueError`` when ``settings.webhook_secret`` is not set."""
        if settings.webhook_secret is None:
            raise ValueError("webhooks are signed: set GRAPHFLOW_WEBHOOK_SECRET to deliver them")
        self.outbox = WebhookOutbox(store)
        self.settings = settings
        self._secret = settings.webhook_secret.get_secret_value()
        self._resolve = resolve
        self._batch_size = batch_size
        # Long enough to send a whole batch even if each attempt times out: a claim that lapsed
        # mid-batch would have another process send the rest too.
        self.claim_seconds = batch_size * (settings.webhook_timeout_seconds + 5.0)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the delivery thread.

        Raises:
            RuntimeError: it was started before.
        """
        if self._thread is not None:
            raise RuntimeError("this WebhookDeliverer was started already")
        self._thread = threading.Thread(target=self._loop, name="graphflow-webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for due deliveries now (call it after queueing one)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the attempt in flight, waiting up to ``timeout`` seconds for it. What is
        still claimed is sent by the next process once the claim lapses."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        # No keep-alive: a pooled connection is keyed by the pinned address, and reusing one
        # for another host on that address would send it over the first host's TLS session.
        limits = httpx.Limits(max_keepalive_connections=0)
        timeout = httpx.Timeout(self.settings.webhook_timeout_seconds)
        # ``trust_env=False``: a proxy from the environment would connect to the host by name,
        # not to the address that was checked.
        with httpx.Client(
            follow_redirects=False, timeout=timeout, limits=limits, trust_env=False
        ) as client:
            while not self._stop.is_set():
                self._wake.clear()  # before the round: a wake during it starts the next one
                try:
                    delay = self._round(client)
                except Exception:
                    log.exception("webhook deliveries failed (the database?); trying again")
                    delay = self.settings.poll_seconds
                self._wake.wait(delay)

    def _round(self, client: httpx.Client) -> float:
        """Send what is due, batch after batch; the seconds until the next look."""
        while not self._stop.is_set():
            due = self.outbox.claim_due(self._batch_size, utcnow(), self.claim_seconds)
            for delivery in due:
                if self._stop.is_set():
                    return 0.0
                self._deliver(client, delivery)
            if len(due) < self._batch_size:
                break
        now = utcnow()
        next_due = self.outbox.next_due(now)
        if next_due is None:
            return self.settings.poll_seconds
        # At least a moment: a due row another process holds (skipped, not waited for) would
        # otherwise make this loop spin until that process commits.
        wait = (next_due - now).total_seconds()
        return min(self.settings.poll_seconds, max(_MIN_WAIT_SECONDS, wait))

    def _deliver(self, client: httpx.Client, delivery: DueDelivery) -> None:
        """One attempt at ``delivery``, recorded."""
        settings = self.settings
        attempt = delivery.attempts + 1
        status_code, error = self._attempt(client, delivery)
        delivered = error is None
        give_up = not delivered and attempt >= settings.webhook_max_attempts
        next_attempt_at: datetime | None = None
        if not delivered and not give_up:
            wait = backoff_seconds(
                attempt, settings.webhook_backoff_seconds, settings.webhook_max_backoff_seconds
            )
            next_attempt_at = utcnow() + timedelta(seconds=wait)
        self.outbox.record_outcome(
            delivery.id,
            delivered=delivered,
            status_code=status_code,
            error=error,
            next_attempt_at=next_attempt_at,
            give_up=give_up,
        )
        if not delivered:
            fate = "gave up" if give_up else f"next attempt at {next_attempt_at:%H:%M:%S}"
            log.warning(
                "webhook delivery %d of run %s, attempt %d: %s; %s",
                delivery.id,
                delivery.run_id,
                attempt,
                error,
                fate,
            )

    def _attempt(
        self, client: httpx.Client, delivery: DueDelivery
    ) -> tuple[int | None, str | None]:
        """POST ``delivery`` once: (the status code if one came, the error or None if 2xx)."""
        try:
            ip, port = resolve_for_delivery(
                delivery.url, self.settings.webhook_allow_hosts, self._resolve
            )
        except InvalidWebhookError as exc:
            return None, _short(f"refused: {exc.reason}")
        body = json.dumps(payload(delivery), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
            "GraphFlow-Delivery": str(delivery.id),
            "GraphFlow-Event": delivery.event,
            "User-Agent": USER_AGENT,
        }
        try:
            url = httpx.URL(delivery.url)
            headers["Host"] = url.netloc.decode("ascii")
            # Connect to the checked address; the certificate is still checked for the name.
            extensions = (
                {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
            )
            pinned = url.copy_with(host=ip, port=port)
            with client.stream(
                "POST", pinned, content=body, headers=headers, extensions=extensions
            ) as response:
                status = response.status_code  # the body is not read: nothing in it matters
        except Exception as exc:  # any failure to send is a failed attempt, never a dead loop
            return None, _short(f"{type(exc).__name__}: {exc}")
        return status, None if 200 <= status < 300 else f"HTTP {status}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _duration_ms(delivery: DueDelivery) -> float | None:
    if delivery.started_at is None or delivery.finished_at is None:
        return None
    return (delivery.finished_at - delivery.started_at).total_seconds() * 1000


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"
