"""Webhook signatures, in the style of Stripe and Svix.

Every delivery carries ``GraphFlow-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
the HMAC-SHA256, under ``GRAPHFLOW_WEBHOOK_SECRET``, of ``f"{t}."`` followed by the exact body
bytes. A receiver recomputes it over the raw body (before parsing the JSON), compares in
constant time, and refuses timestamps older than a few minutes, so a captured delivery cannot
be replayed later. ``verify`` does all three; receivers written in Python may use it as it is.

Several ``v1=`` entries may appear (one per secret while a secret is rotated): any match counts.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "SignatureError", "sign", "verify"]

SIGNATURE_HEADER = "GraphFlow-Signature"
_SCHEME = "v1"


class SignatureError(ValueError):
    """A ``GraphFlow-Signature`` does not prove the body came from us now; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid {SIGNATURE_HEADER}: {reason}")
        self.reason = reason


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``GraphFlow-Signature`` header value of ``body`` sent at ``timestamp`` (unix s)."""
    return f"t={timestamp},{_SCHEME}={_digest(secret, body, timestamp)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> None:
    """Check that ``header`` signs ``body`` under ``secret`` within ``tolerance_seconds`` of
    ``now`` (default: the current time).

    Raises:
        SignatureError: the header is malformed, its timestamp is too far from ``now``, or
            no signature in it matches.
    """
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed entry {item.strip()!r}: expected key=value")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"timestamp {value!r} is not an integer") from None
        elif key == _SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("no timestamp (t=...)")
    if not signatures:
        raise SignatureError(f"no {_SCHEME}= signature")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError(
            f"timestamp {timestamp} is {current - timestamp:.0f} s from now, more than the "
            f"tolerance of {tolerance_seconds:g} s (a replay, or a clock that is off)"
        )
    expected = _digest(secret, body, timestamp).encode()
    # As bytes: compare_digest raises on non-ASCII text, and the header is the sender's.
    matched = [hmac.compare_digest(expected, candidate.encode()) for candidate in signatures]
    if not any(matched):
        raise SignatureError("the signature does not match the body and secret")
