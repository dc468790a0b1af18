"""Request limits on a live server: body size (declared and chunked), JSON depth, unstorable
output and the cap on open event streams."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow

LIMIT = 4096


def _read_response(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data and b"detail" in data:
            break
    return data


def test_declared_oversized_body_is_rejected_before_it_is_sent(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url, GRAPHFLOW_MAX_BODY_BYTES=str(LIMIT))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /graphs/three_step/runs HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
        )  # no body byte is ever sent: the answer must not wait for it
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 413")
    assert b'"detail"' in response and str(LIMIT).encode() in response


def test_chunked_oversized_body_is_cut_off_at_the_limit(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url, GRAPHFLOW_MAX_BODY_BYTES=str(LIMIT))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /graphs/three_step/runs HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 1024
        for _ in range(LIMIT // 1024 + 2):  # a little over the limit, then stop sending
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 413")
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/runs").json()["items"] == []
        assert http.get("/healthz").status_code == 200


def test_chunked_body_under_the_limit_is_accepted(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url, GRAPHFLOW_MAX_BODY_BYTES=str(LIMIT))

    def body() -> object:
        yield b'{"input": '
        yield b'{"x": 3}}'

    with httpx.Client(base_url=server.url) as http:
        resp = http.post(
            "/graphs/three_step/runs?wait=true",
            content=body(),
            headers={"content-type": "application/json"},
        )
    assert resp.status_code == 200 and resp.json()["output"]["x"] == 90


def test_deeply_nested_json_is_400_and_the_server_stays_up(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url)
    body = b'{"input": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_001
    with httpx.Client(base_url=server.url) as http:
        resp = http.post(
            "/graphs/three_step/runs", content=body, headers={"content-type": "application/json"}
        )
        assert resp.status_code == 400 and "GRAPHFLOW_MAX_JSON_DEPTH" in resp.text
        assert http.get("/healthz").status_code == 200


def test_unstorable_node_output_fails_that_run_and_the_server_stays_up(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        bad = http.post("/graphs/unstorable/runs?wait=true", json={"input": {}}).json()
        assert bad["status"] == "failed"
        assert "not JSON serializable" in bad["error"]["message"]
        assert bad["error"]["node"] == "bad"
        good = http.post("/graphs/three_step/runs?wait=true", json={"input": {"x": 1}})
        assert good.json()["status"] == "succeeded"
    assert server.proc.poll() is None


def test_event_streams_beyond_the_cap_are_503_until_a_client_disconnects(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url, GRAPHFLOW_MAX_STREAMS="2")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        run = http.post("/graphs/slow_chain/runs", json={"input": {"delay": 2}}).json()
        path = f"/runs/{run['id']}/events"
        with http.stream("GET", path) as first, http.stream("GET", path) as second:
            assert first.status_code == second.status_code == 200
            refused = http.get(path)
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "5"
            assert "limit of 2" in refused.text and "GRAPHFLOW_MAX_STREAMS" in refused.text
        # Both clients hung up mid-stream: their slots come back.
        deadline = time.monotonic() + 10
        while True:
            with http.stream("GET", path) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "stream slots were not released"
            time.sleep(0.1)
        http.post(f"/runs/{run['id']}/cancel")
