"""SSE against a live uvicorn server: live delivery, late joiners, resume, keep-alive."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.service.api.test_routes_runs import parse_sse

pytestmark = pytest.mark.slow


def _iter_events(resp: httpx.Response) -> Iterator[dict[str, Any]]:
    buf = ""
    for chunk in resp.iter_text():
        buf += chunk.replace("\r\n", "\n")
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            if block.startswith(":"):
                yield {"comment": block}
            else:
                yield from parse_sse(block + "\n\n")


def test_live_and_late_clients_get_the_same_full_history_without_gaps(
    database_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(database_url, GRAPHFLOW_SSE_KEEPALIVE_SECONDS="0.2")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        run = http.post("/graphs/slow_chain/runs", json={"input": {"delay": 0.3}}).json()
        url = f"/runs/{run['id']}/events"
        live: list[dict[str, Any]] = []
        pings = 0
        first_three: list[str] = []
        with http.stream("GET", url) as resp:
            assert resp.headers["x-accel-buffering"] == "no"
            for item in _iter_events(resp):
                if "comment" in item:
                    pings += 1
                    continue
                live.append(item)
                if len(live) == 3:
                    # a late joiner while the run is still going: history first, then live
                    with http.stream("GET", url) as late:
                        first_three = [e["id"] for e in _take(late, 3)]
        assert live[-1]["event"] == "run_succeeded"
        ids = [int(e["id"]) for e in live]
        assert ids == list(range(1, len(ids) + 1))
        assert len(live) == 1 + 8 * 2 + 1
        assert first_three == ["1", "2", "3"]
        assert pings >= 1  # idle gaps (0.3 s nodes) carry keep-alive comments
        # a client joining after the end gets everything once; resume variants get the tail
        with http.stream("GET", url) as resp:
            replay = [e for e in _iter_events(resp) if "comment" not in e]
        assert [(e["id"], e["event"], e["data"]) for e in replay] == [
            (e["id"], e["event"], e["data"]) for e in live
        ]
        with http.stream("GET", url, headers={"Last-Event-ID": "10"}) as resp:
            tail = [int(e["id"]) for e in _iter_events(resp) if "comment" not in e]
        assert tail == ids[10:]
        with http.stream("GET", f"{url}?after=17") as resp:
            tail = [int(e["id"]) for e in _iter_events(resp) if "comment" not in e]
        assert tail == [18]


def _take(resp: httpx.Response, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in _iter_events(resp):
        if "comment" not in item:
            out.append(item)
            if len(out) == n:
                break
    return out


def test_resuming_mid_run_continues_without_gap_or_duplicate(
    database_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(database_url)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        run = http.post("/graphs/slow_chain/runs", json={"input": {"delay": 0.15}}).json()
        url = f"/runs/{run['id']}/events"
        with http.stream("GET", url) as resp:
            head = _take(resp, 4)  # disconnect mid-run
        time.sleep(0.3)  # events keep being stored while nobody listens
        with http.stream("GET", url, headers={"Last-Event-ID": head[-1]["id"]}) as resp:
            rest = [e for e in _iter_events(resp) if "comment" not in e]
        ids = [int(e["id"]) for e in head + rest]
        assert ids == list(range(1, 19))
        assert rest[-1]["event"] == "run_succeeded"
        assert http.get(f"/runs/{run['id']}").json()["status"] == "succeeded"


def test_cancelled_run_stream_ends_with_run_cancelled(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        run = http.post("/graphs/slow_chain/runs", json={"input": {"delay": 0.2}}).json()
        with http.stream("GET", f"/runs/{run['id']}/events") as resp:
            events = []
            for item in _iter_events(resp):
                if "comment" in item:
                    continue
                events.append(item)
                if item["event"] == "node_completed":
                    assert http.post(f"/runs/{run['id']}/cancel").status_code in (200, 202)
        assert events[-1]["event"] == "run_cancelled"
        assert not any(e["event"] == "node_started" and e["data"]["node"] == "s7" for e in events)
