"""Body size limit (413) on a live server, for declared and chunked bodies."""

from __future__ import annotations

import socket
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
