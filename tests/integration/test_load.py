"""Load against a live server: concurrent clients, open event streams, clients that drop streams.

A scaled-down ``bench/load_bench.py`` (same generator, same checks) on each backend: 40 clients
create 300 mixed guide-workflow runs while 40 of them are streamed, then 100 clients open streams
and drop them. Nothing may be lost, duplicated or locked, and the server's memory and fds must
come back to their baseline.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest

from bench.loadgen import LoadGenerator, check_streams, wait_until_idle
from bench.loadscenario import LoadConfig, Report, run_scenario, server_env
from bench.loadserver import serve

pytestmark = pytest.mark.slow

CONFIG = LoadConfig(
    runs=300, clients=40, streams=40, drop_clients=100, long_runs=2, settle_limit=35.0
)


def _backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


def test_concurrent_clients_lose_nothing_and_leave_the_server_as_they_found_it(
    database_url: str, tmp_path: Path
) -> None:
    report: Report = run_scenario(_backend(database_url), database_url, CONFIG, tmp_path)
    table = "\n" + report.table()
    print(table)

    assert report.created == CONFIG.runs, table
    assert report.load.errors == 0, report.load.error_samples
    assert report.lost == [], table
    assert report.not_succeeded == 0, table
    assert report.locked == 0, table
    assert report.sse.opened == len(report.load.streams) >= CONFIG.streams, report.sse.errors
    assert report.load.peak_open_streams == CONFIG.streams, table
    assert (report.sse.missed, report.sse.duplicated) == (0, 0), table
    assert (report.sse.out_of_order, report.sse.unexpected, report.sse.unterminated) == (0, 0, 0)
    assert report.after_load.seconds is not None, table
    assert report.after_load.seconds <= CONFIG.settle_target, table
    assert report.dropped.drop.errors == 0, report.dropped.drop.error_samples
    assert report.dropped.long_runs_ok and report.dropped.replay_ok, table
    assert report.after_drop.seconds is not None, table
    assert report.after_drop.seconds <= CONFIG.settle_target, table
    if _backend(database_url) == "sqlite":
        assert report.integrity == "ok", table
    assert report.failures() == [], table


def test_stream_check_reports_a_missing_and_a_duplicated_event(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = dataclasses.replace(CONFIG, runs=1, clients=1, streams=1)

    async def stream_one(url: str) -> tuple[int, int, int, int]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            gen = LoadGenerator(client, runs=1, clients=1, streams=1, time_limit=30)
            await gen.create_all()
            assert await wait_until_idle(client, 30)
            stream = (await gen.finish_streams())[0]
            intact = await check_streams(client, [stream])
            stream.ids = [stream.ids[0], stream.ids[0], *stream.ids[2:]]  # lose #2, repeat #1
            broken = await check_streams(client, [stream])
        return intact.missed, intact.duplicated, broken.missed, broken.duplicated

    with serve(sqlite_url, tmp_path / "server.log", server_env(config)) as server:
        assert asyncio.run(stream_one(server.url)) == (0, 0, 1, 1)
