"""Shared fixtures of the service and integration tests: databases, apps, live servers.

``database_url`` is parametrized over SQLite (a temp file) and Postgres (a fresh database per
test, created on the server named by ``GRAPHFLOW_TEST_POSTGRES_URL``). Without a reachable
Postgres the Postgres cases are skipped with the reason, unless ``GRAPHFLOW_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_WORKFLOWS = "tests.service.sample_workflows"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

_pg_state: dict[str, Any] = {}


def _pg_admin_url() -> str:
    return os.environ.get("GRAPHFLOW_TEST_POSTGRES_URL", DEFAULT_PG_URL)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _pg_available() -> str | None:
    """None when Postgres answers, else the reason it does not."""
    if "reason" not in _pg_state:
        import psycopg

        try:
            with psycopg.connect(_libpq(_pg_admin_url()), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = f"Postgres at {_pg_admin_url()} not reachable: {exc}"
    reason: str | None = _pg_state["reason"]
    return reason


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create ``gf_<random>`` on the test server; drop it afterwards."""
    import psycopg

    reason = _pg_available()
    if reason is not None:
        if os.environ.get("GRAPHFLOW_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"GRAPHFLOW_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    admin = _pg_admin_url()
    name = f"gf_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(_libpq(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of each backend, private to the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'graphflow.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'graphflow.db'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "GRAPHFLOW_DATABASE_URL": database_url,
            "GRAPHFLOW_WORKFLOWS": SAMPLE_WORKFLOWS,
            "GRAPHFLOW_SHUTDOWN_GRACE_SECONDS": "0.5",
            "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p),
        }
    )
    env.update(extra)
    return env


class _Process:
    """A child process of a test, its output in ``log_path``; stopped by the fixtures."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: Any

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


class LiveServer(_Process):
    """A real uvicorn process serving ``create_app`` on a loopback port."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        cli: bool = False,
        command: str = "serve",
        **env: str,
    ) -> None:
        """``cli``: start ``graphflow <command>`` (``serve`` or ``api``) instead of uvicorn."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")
        if cli:
            cmd = [
                sys.executable,
                "-m",
                "service.cli",
                command,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ]
        else:
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "service.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=server_env(database_url, **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")


class WorkerProcess(_Process):
    """A real ``graphflow worker`` process, started once its health file exists."""

    def __init__(self, database_url: str, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self.health_file = log_path.with_suffix(".health")
        self._log = open(log_path, "ab")
        cmd = [sys.executable, "-m", "service.cli", "worker", "--log-level", "warning"]
        cmd += ["--health-file", str(self.health_file)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=server_env(database_url, **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not self.health_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log()}")
            time.sleep(0.05)


def _process_factory(
    tmp_path: Path, kind: Callable[..., Any], name: str
) -> Iterator[Callable[..., Any]]:
    """A factory starting ``kind`` processes, each logging to ``<name>-<n>.log`` in
    ``tmp_path``; all are stopped at teardown."""
    started: list[Any] = []

    def start(database_url: str, **kwargs: Any) -> Any:
        process = kind(database_url, tmp_path / f"{name}-{len(started)}.log", **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory starting ``graphflow worker`` processes; all are stopped at teardown."""
    yield from _process_factory(tmp_path, WorkerProcess, "worker")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Factory starting live servers; all are stopped at teardown."""
    yield from _process_factory(tmp_path, LiveServer, "server")


@pytest.fixture
def live_server(database_url: str, start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(database_url)


def make_settings(database_url: str, **overrides: Any) -> Any:
    from service.settings import Settings

    values: dict[str, Any] = {
        "database_url": database_url,
        "workflows": [SAMPLE_WORKFLOWS],
        "shutdown_grace_seconds": 0.5,
        "run_wait_timeout": 10.0,
        "sse_keepalive_seconds": 1.0,
        "max_concurrent_runs": 4,
        "db_pool_size": 5,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def client(database_url: str) -> Iterator[Any]:
    """An in-process TestClient of a fresh app on its own database (lifespan included)."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(make_settings(database_url))) as test_client:
        yield test_client


def wait_for_status(
    client: Any,
    run_id: str,
    statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Poll ``GET /runs/{id}`` until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = client.get(f"/runs/{run_id}").json()
        if run["status"] in statuses or time.monotonic() > deadline:
            return run
        time.sleep(0.02)
