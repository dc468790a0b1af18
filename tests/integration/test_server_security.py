"""API keys and start-up checks on live servers: every endpoint, enumerated from the app."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from service.api.security import PUBLIC_PATHS
from service.app import create_app
from tests.conftest import ROOT, LiveServer, make_settings, server_env

pytestmark = pytest.mark.slow

KEY = "s3cret-key-for-tests"


def _endpoints(sqlite_url: str) -> Iterator[tuple[str, str]]:
    """(method, path template) of every operation in the OpenAPI document, plus the app's
    undocumented routes (the docs pages and the document itself)."""
    app = create_app(make_settings(sqlite_url))
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            yield method.upper(), path
    for route in app.routes:
        if isinstance(route, Route) and not route.include_in_schema:
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, route.path


def _call(http: httpx.Client, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = {"input": {}} if method == "POST" and path.endswith("/runs") else None
    return http.request(method, path, json=body, headers=headers)


def test_every_endpoint_but_the_probes_needs_a_valid_api_key(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url, GRAPHFLOW_API_KEYS=f"other-key,{KEY}")
    good = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        run_id = http.post("/graphs/failing/runs?wait=true", json={"input": {}}, headers=good)
        values = {"name": "failing", "run_id": run_id.json()["id"]}
        endpoints = list(_endpoints(sqlite_url))
        assert ("POST", "/runs/{run_id}/cancel") in endpoints and ("GET", "/docs") in endpoints
        for method, template in endpoints:
            path = template.format(**values)
            wrong = {"Authorization": "Bearer not-the-key"}
            attempts = {"none": {}, "wrong": wrong, "basic": {"Authorization": f"Basic {KEY}"}}
            for label, headers in attempts.items():
                resp = _call(http, method, path, headers)
                if template in PUBLIC_PATHS:
                    assert resp.status_code == 200, (method, path, label)
                    continue
                assert resp.status_code == 401, (method, path, label, resp.text)
                assert resp.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
                assert "detail" in resp.json()
            resp = _call(http, method, path, good)
            assert resp.status_code not in (401, 403) and resp.status_code < 500, (method, path)
    assert KEY not in server.log()


def test_cors_wildcard_with_credentials_refuses_to_start(sqlite_url: str, tmp_path: Path) -> None:
    env = server_env(
        sqlite_url, GRAPHFLOW_CORS_ORIGINS="*", GRAPHFLOW_CORS_ALLOW_CREDENTIALS="true"
    )
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", "1"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    output = " ".join((done.stdout + done.stderr).split())
    assert "GRAPHFLOW_CORS_ALLOW_CREDENTIALS" in output


def test_serve_without_keys_binds_loopback_and_warns_it_is_unauthenticated(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url, cli=True)
    deadline = time.monotonic() + 5
    while "unauthenticated" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "WARNING" in server.log() and "bound to loopback 127.0.0.1" in server.log()
    assert httpx.get(f"{server.url}/runs").status_code == 200
