"""The server side of a load run: a real uvicorn process, its /proc numbers, its databases.

Used by ``bench/load_bench.py`` and ``tests/integration/test_load.py``. The server is started with
``python -m uvicorn --factory service.app:create_app`` on a free loopback port; its stdout and
stderr go to one log file, which is what "database is locked" is counted in.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LOCKED = "database is locked"
# Substrings of ``Settings`` field names that are admission caps (queued/active runs, open
# streams). They are set generously for a load run so back-pressure is the exception.
_CAP_HINTS = ("queue", "active_run", "pending", "stream")


@dataclass(frozen=True)
class ProcStats:
    """Resident memory, open file descriptors and threads of a process."""

    rss_kb: int
    fds: int
    threads: int

    @property
    def rss_mb(self) -> float:
        return self.rss_kb / 1024


def proc_stats(pid: int) -> ProcStats:
    """Read ``VmRSS`` and ``Threads`` from ``/proc/<pid>/status`` and count ``/proc/<pid>/fd``."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return ProcStats(
        rss_kb=int(fields["VmRSS"].split()[0]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(fields["Threads"]),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def generous_caps(runs: int, streams: int) -> dict[str, str]:
    """``GRAPHFLOW_*`` values lifting any admission cap the service's ``Settings`` declare.

    The caps are looked up rather than hard-coded because they are added to the service in
    parallel with this benchmark; a cap that does not exist yet is simply not set.
    """
    from service.settings import Settings

    env: dict[str, str] = {}
    for name in Settings.model_fields:
        if name.startswith("max_") and any(hint in name for hint in _CAP_HINTS):
            value = streams if "stream" in name else runs
            env[f"GRAPHFLOW_{name.upper()}"] = str(value)
    return env


class ServerProcess:
    """A uvicorn process serving the GraphFlow app, with its output captured in ``log_path``."""

    def __init__(
        self, database_url: str, log_path: Path, env: Mapping[str, str], root: Path = ROOT
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(
            {
                "GRAPHFLOW_DATABASE_URL": database_url,
                # ``root`` (another checkout, for before/after figures) shadows this one, which
                # still supplies ``bench``; the server's cwd is ``root`` as well.
                "PYTHONPATH": os.pathsep.join(
                    dict.fromkeys(
                        p for p in (str(root), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
                    )
                ),
            }
        )
        full_env.update(env)
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(
            cmd, cwd=root, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_healthy(timeout=30.0)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stats(self) -> ProcStats:
        return proc_stats(self.pid)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def count_in_log(self, needle: str) -> int:
        return self.log().lower().count(needle.lower())

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if not self._log.closed:
            self._log.close()


@contextlib.contextmanager
def serve(
    database_url: str, log_path: Path, env: Mapping[str, str], root: Path = ROOT
) -> Iterator[ServerProcess]:
    """Run a server (from checkout ``root``) for the duration of the block; always stopped."""
    server = ServerProcess(database_url, log_path, env, root)
    try:
        yield server
    finally:
        server.stop()


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def pg_admin_url() -> str:
    return os.environ.get("GRAPHFLOW_TEST_POSTGRES_URL", DEFAULT_PG_ADMIN)


@contextlib.contextmanager
def fresh_postgres_database(admin_url: str | None = None) -> Iterator[str]:
    """Create an empty ``gf_load_<random>`` database next to ``admin_url``; drop it afterwards."""
    import psycopg

    admin = admin_url or pg_admin_url()
    name = f"gf_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq_url(admin), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(libpq_url(admin), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_file(database_url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, or None for other databases."""
    prefix = "sqlite:///"
    return Path(database_url[len(prefix) :]) if database_url.startswith(prefix) else None


def sqlite_integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a SQLite file: ``"ok"`` or the problems it lists."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in rows)
