"""API keys, CORS settings, the OpenAPI security declaration and the bind warning."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.api.security import bind_warning, key_matches
from service.app import create_app
from service.settings import Settings
from tests.conftest import make_settings


def test_cors_wildcard_with_credentials_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="GRAPHFLOW_CORS_ALLOW_CREDENTIALS"):
        Settings(cors_origins="*", cors_allow_credentials=True)
    Settings(cors_origins="*")  # without credentials it is allowed
    Settings(cors_origins="https://a.example", cors_allow_credentials=True)


def test_api_keys_are_comma_separated_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHFLOW_API_KEYS", "alpha-secret, beta-secret")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["alpha-secret", "beta-secret"]
    assert "alpha-secret" not in repr(settings) and "alpha-secret" not in str(settings)


def test_key_matches_only_an_exact_configured_key() -> None:
    keys = [b"alpha", b"beta"]
    assert key_matches(b"beta", keys)
    assert not key_matches(b"bet", keys) and not key_matches(b"betaa", keys)
    assert not key_matches(b"", keys) and not key_matches(b"alpha", [])


def test_bind_warning_is_mild_on_loopback_loud_elsewhere_and_absent_with_keys() -> None:
    no_keys = Settings()
    loopback = bind_warning("127.0.0.1", no_keys)
    assert loopback is not None and "unauthenticated" in loopback and "loopback" in loopback
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        loud = bind_warning(host, no_keys)
        assert loud is not None and "UNAUTHENTICATED" in loud and "GRAPHFLOW_API_KEYS" in loud
    assert bind_warning("0.0.0.0", Settings(api_keys="k")) is None


def _app_client(sqlite_url: str, **overrides: Any) -> TestClient:
    return TestClient(create_app(make_settings(sqlite_url, **overrides)))


def test_openapi_declares_the_bearer_scheme_and_401_only_when_keys_are_set(
    sqlite_url: str,
) -> None:
    with _app_client(sqlite_url) as client:
        open_doc = client.get("/openapi.json").json()
    with _app_client(sqlite_url, api_keys=["k"]) as client:
        keyed_doc = client.get("/openapi.json", headers={"Authorization": "Bearer k"}).json()
    for doc in (open_doc, keyed_doc):
        assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
        assert "security" not in doc["paths"]["/healthz"]["get"]
    create_open = open_doc["paths"]["/graphs/{name}/runs"]["post"]
    create_keyed = keyed_doc["paths"]["/graphs/{name}/runs"]["post"]
    assert (
        create_open["security"] == [{"bearerAuth": []}, {}]
        and "401" not in create_open["responses"]
    )
    assert create_keyed["security"] == [{"bearerAuth": []}] and "401" in create_keyed["responses"]


def test_cors_is_off_by_default_and_allows_only_configured_origins(sqlite_url: str) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    with _app_client(sqlite_url) as client:
        resp = client.options("/runs", headers={"Origin": "https://a.example", **preflight})
        assert "access-control-allow-origin" not in resp.headers
    with _app_client(sqlite_url, cors_origins=["https://a.example"], api_keys=["k"]) as client:
        ok = client.options("/runs", headers={"Origin": "https://a.example", **preflight})
        assert ok.status_code == 200  # preflights carry no key and must not need one
        assert ok.headers["access-control-allow-origin"] == "https://a.example"
        other = client.options("/runs", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        denied = client.get("/runs", headers={"Origin": "https://a.example"})
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == "https://a.example"
