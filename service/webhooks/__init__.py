"""Webhooks: a run's summary POSTed to the run's ``webhook_url`` when it ends or is interrupted.

``urls`` decides which URLs we send to (SSRF protection), ``signing`` signs each body (and lets
receivers verify it), ``delivery`` works off the outbox (``service.storage.outbox``) in a
thread of every process that executes runs.
"""

from __future__ import annotations

from service.webhooks.delivery import (
    USER_AGENT,
    WebhookDeliverer,
    backoff_seconds,
    deliverer_for,
    payload,
)
from service.webhooks.signing import SIGNATURE_HEADER, SignatureError, sign, verify
from service.webhooks.urls import (
    MAX_URL_LENGTH,
    Resolver,
    check_webhook_url,
    resolve_for_delivery,
    system_resolve,
)

__all__ = [
    "MAX_URL_LENGTH",
    "Resolver",
    "SIGNATURE_HEADER",
    "SignatureError",
    "USER_AGENT",
    "WebhookDeliverer",
    "backoff_seconds",
    "check_webhook_url",
    "deliverer_for",
    "payload",
    "resolve_for_delivery",
    "sign",
    "system_resolve",
    "verify",
]
