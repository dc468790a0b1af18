"""A SQLite database whose disk fills up, or whose file system turns read-only, under a live
server: requests that must write get 503 with Retry-After and a detail naming the cause, reads
go on, the server does not exit, and runs in flight finish, each node once, once the disk can
be written again.

The database lives on a small tmpfs the test mounts (and fills, and remounts read-only), which
needs root: elsewhere the tests skip, saying so. CI runs as root.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.integration.durability import completions_by_node, durable_env
from tests.integration.durable_workflows import CHAIN

pytestmark = pytest.mark.slow

DISK_BYTES = 16 * 2**20
PADDING = "x" * 7_000  # in each run's metadata (at most 8 KiB): the database grows fast


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of its own, unmounted at teardown."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True)


def _fill(path: Path) -> None:
    """Write ``path`` until the file system has no space left."""
    chunk = b"\0" * 2**16
    with open(path, "wb", buffering=0) as filler:
        with contextlib.suppress(OSError):
            while True:
                filler.write(chunk)
        # What is left is less than a chunk: take it byte by byte.
        try:
            while True:
                filler.write(b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def _create(server: LiveServer, tag: str, delay: float = 0.0) -> httpx.Response:
    body = {"input": {"tag": tag, "delay": delay}, "metadata": {"padding": PADDING}}
    return httpx.post(f"{server.url}/graphs/steady_chain/runs", json=body, timeout=30)


def _settle(server: LiveServer, ids: list[str], timeout: float = 60) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    runs: dict[str, dict] = {}
    while len(runs) < len(ids):
        assert time.monotonic() < deadline, f"{len(ids) - len(runs)} unfinished\n{server.log()}"
        for run_id in ids:
            resp = httpx.get(f"{server.url}/runs/{run_id}", timeout=10)
            if resp.status_code == 200 and resp.json()["status"] not in ("queued", "running"):
                runs[run_id] = resp.json()
        time.sleep(0.2)
    return runs


def _refused(resp: httpx.Response, cause: str) -> None:
    assert resp.status_code == 503, (resp.status_code, resp.text)
    assert int(resp.headers["Retry-After"]) > 0
    assert cause in resp.json()["detail"], resp.json()


@pytest.mark.parametrize("lease", [30.0, 1.0], ids=["within-a-lease", "past-a-lease"])
def test_a_full_disk_gets_503_naming_it_and_runs_in_flight_finish_once_space_is_freed(
    lease: float, small_disk: Path, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """Within a lease, the runs ride the full disk out. Past it, the server stops them and,
    once the disk has room, resumes them from their journals as its own orphans."""
    counter = tmp_path / "completions.txt"
    database_url = f"sqlite:///{small_disk / 'graphflow.db'}"
    server = start_server(database_url, **durable_env(counter, lease=lease))
    in_flight = [_create(server, f"r{i}", delay=0.1).json()["id"] for i in range(4)]
    filler = small_disk / "filler"
    _fill(filler)

    # Creates go on until a write needs a page the disk does not have.
    refused = None
    for i in range(200):
        resp = _create(server, f"full{i}")
        if resp.status_code != 202:
            refused = resp
            break
    assert refused is not None, "200 runs of 7 kB fitted on a full disk"
    _refused(refused, "the disk of the SQLite database is full")
    read = httpx.get(f"{server.url}/runs/{in_flight[0]}", timeout=10)
    assert read.status_code == 200 and read.json()["tags"] == []
    time.sleep(2.0)  # the runs in flight go on, their events kept in memory
    assert server.proc.poll() is None, server.log()

    filler.unlink()
    runs = _settle(server, in_flight)
    assert {run["status"] for run in runs.values()} == {"succeeded"}, runs
    for i in range(4):
        completed = completions_by_node(counter, f"r{i}")
        assert set(completed) == set(CHAIN)
        if lease > 2.0:  # every node ran once (past a lease, a node in flight runs again)
            assert completed == {n: [server.pid] for n in CHAIN}
    after = _create(server, "after")
    assert after.status_code == 202, after.text
    assert _settle(server, [after.json()["id"]])[after.json()["id"]]["status"] == "succeeded"


def test_a_read_only_database_gets_503_naming_it_and_reads_go_on(
    sqlite_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    env = durable_env(tmp_path / "completions.txt", lease=30.0)
    server = start_server(sqlite_url, **env)
    first = _create(server, "before")
    assert first.status_code == 202, first.text
    assert _settle(server, [first.json()["id"]])[first.json()["id"]]["status"] == "succeeded"
    server.stop()

    # The same file opened read-only (SQLite refuses every write, as on a read-only volume).
    path = sqlite_url.removeprefix("sqlite:///")
    server = start_server(f"sqlite:///file:{path}?mode=ro&uri=true", **env)
    _refused(_create(server, "during"), "the SQLite database is read-only")
    read = httpx.get(f"{server.url}/runs/{first.json()['id']}", timeout=10)
    assert read.status_code == 200 and read.json()["status"] == "succeeded", read.text
    listing = httpx.get(f"{server.url}/runs", timeout=10)
    assert [run["id"] for run in listing.json()["items"]] == [first.json()["id"]]
    time.sleep(1.0)  # heartbeats and sweeps meet the read-only file too
    assert server.proc.poll() is None, server.log()
