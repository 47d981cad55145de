"""`turnout serve` bounds what a client costs before any handler runs: request heads
too big (431) or too slow (408) are refused and their connections closed, silent
connections are dropped, and past ``gateway.max_connections`` new requests get 503."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .test_serve import Serve

POLICY = """\
version: 1
gateway: {max_header_bytes: 8KiB, header_timeout: 300ms, max_connections: 4}
providers:
  mock: {type: mock}
"""


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    policy = tmp_path_factory.mktemp("limits") / "routes.yaml"
    policy.write_text(POLICY)
    running = Serve("--config", str(policy), "--no-watch")
    yield running
    running.stop()


def _connect(serve: Serve) -> socket.socket:
    return socket.create_connection(("127.0.0.1", serve.port), timeout=5)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_huge_header_is_refused_before_it_is_buffered(serve: Serve) -> None:
    with _connect(serve) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: ")
        refused = b""
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(2000):  # up to 64 MiB, which the gateway must never take in
                sock.sendall(b"a" * 32768)
        refused = _read_all(sock)
    assert refused.startswith(b"HTTP/1.1 431 ")
    assert b'"code": "headers_too_large"' in refused and b"8192 bytes" in refused


def test_a_head_that_trickles_is_cut_off_with_408(serve: Serve) -> None:
    with _connect(serve) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        answer = _read_all(sock)  # the server answers and closes; nothing more is sent
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in answer
    assert took < 3


def test_a_connection_that_never_speaks_is_closed(serve: Serve) -> None:
    with _connect(serve) as sock:
        assert _read_all(sock) == b""  # closed by the gateway, not by our timeout


def test_ordinary_requests_and_keep_alive_still_work(serve: Serve) -> None:
    with httpx.Client(base_url=serve.url) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(0.4)  # longer than header_timeout between requests on one connection
        reply = client.post(
            "/v1/chat/completions",
            json={"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-fine": "b" * 4000},
        )
        assert reply.status_code == 200


def test_past_max_connections_new_requests_get_503(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(POLICY.replace("header_timeout: 300ms", "header_timeout: 60s"))
    serve = Serve("--config", str(policy), "--no-watch")
    held = [_connect(serve) for _ in range(4)]
    try:
        for sock in held:
            sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")  # partial heads hold them
        time.sleep(0.05)
        assert httpx.get(serve.url + "/health").status_code == 503
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 10
        while httpx.get(serve.url + "/health").status_code != 200:
            assert time.monotonic() < deadline, "connections never freed"
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
        serve.stop()
