"""Webhook signatures: what ``sign`` makes, ``verify`` accepts, and nothing else."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from service.webhooks.signing import SignatureError, sign, verify

SECRET = "whsec-test"
BODY = b'{"event":"run_succeeded","delivery_id":1}'
NOW = 1_767_225_600


def test_a_signature_verifies_and_is_the_documented_hmac() -> None:
    header = sign(SECRET, BODY, NOW)
    verify(SECRET, header, BODY, now=NOW + 10)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"


def test_a_tampered_body_is_refused() -> None:
    header = sign(SECRET, BODY, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, header, BODY.replace(b"1", b"2"), now=NOW)


def test_another_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify("another", sign(SECRET, BODY, NOW), BODY, now=NOW)


def test_a_changed_timestamp_is_refused() -> None:
    digest = sign(SECRET, BODY, NOW).split(",")[1]
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, f"t={NOW + 1},{digest}", BODY, now=NOW)


@pytest.mark.parametrize("offset", [301, -301])
def test_a_timestamp_outside_the_tolerance_is_refused(offset: int) -> None:
    with pytest.raises(SignatureError, match="tolerance of 300 s"):
        verify(SECRET, sign(SECRET, BODY, NOW), BODY, now=NOW + offset)
    verify(SECRET, sign(SECRET, BODY, NOW), BODY, now=NOW + offset, tolerance_seconds=600)


def test_any_of_several_signatures_may_match_while_a_secret_rotates() -> None:
    old = sign("old-secret", BODY, NOW).split(",")[1]
    verify(SECRET, f"{sign(SECRET, BODY, NOW)},{old}", BODY, now=NOW)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("", "malformed entry"),
        ("garbage", "malformed entry"),
        ("t=abc,v1=00", "not an integer"),
        ("v1=00", "no timestamp"),
        (f"t={NOW}", "no v1= signature"),
        (f"t={NOW},v0=00", "no v1= signature"),
        (f"t={NOW},v1=é", "does not match"),
    ],
)
def test_malformed_headers_are_refused_with_the_reason(header: str, why: str) -> None:
    with pytest.raises(SignatureError, match=why) as caught:
        verify(SECRET, header, BODY, now=NOW)
    assert isinstance(caught.value, ValueError)
