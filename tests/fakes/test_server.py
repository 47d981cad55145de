"""The loopback server base: a plain function plays the upstream over real HTTP."""

from __future__ import annotations

import socket

import httpx2

from tests.fakes.server import LoopbackServer, Reply, Request


def test_a_plain_handler_answers_over_loopback_with_keep_alive() -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Reply:
        seen.append(request)
        return Reply.json(201, {"path": request.path, "query": request.query})

    with LoopbackServer(handler) as server, httpx2.Client() as http:
        first = http.post(f"{server.url}/v1/thing?x=1", json={"a": 1})
        second = http.get(f"{server.url}/other")
    assert (first.status_code, first.json()) == (201, {"path": "/v1/thing", "query": "x=1"})
    assert second.json() == {"path": "/other", "query": ""}
    assert seen[0].method == "POST" and seen[0].raw == b'{"a":1}'
    assert seen[0].headers["content-type"] == "application/json"
    assert server.connection_count == 1  # both requests on one kept-alive connection


def test_a_failing_handler_is_a_500_that_names_the_bug() -> None:
    def handler(request: Request) -> Reply:
        raise KeyError("missing")

    with LoopbackServer(handler) as server:
        reply = httpx2.get(server.url + "/")
    assert reply.status_code == 500
    assert "fake upstream bug" in reply.json()["error"]["message"]
    assert "missing" in reply.json()["error"]["message"]


def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer


def test_a_malformed_request_gets_the_on_error_reply() -> None:
    def on_error(status: int, message: str) -> Reply:
        return Reply.json(status, {"vendor": message}, keep_alive=False)

    with LoopbackServer(lambda r: Reply.json(200, {}), on_error=on_error) as server:
        answer = exchange(server.port, b"NONSENSE\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b'"vendor": "Malformed request line' in answer
