"""Bad input never reaches a provider and never gets a bare 500: clear 4xx JSON."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import RunningGateway

URL = "/v1/chat/completions"


def _post(gateway: RunningGateway, content: bytes, **kwargs: object) -> httpx.Response:
    return httpx.post(gateway.url + URL, content=content, **kwargs)  # type: ignore[arg-type]


def _assert_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status_code"] == status
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("content", "status", "fragment"),
    [
        (b'{"model": "upstream", "messages": [', 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b'{"model": "upstream", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400,
         "UTF-8"),
        (b"[1, 2]", 400, "object"),
        (b'{"model": "upstream"}', 400, "messages"),
        (b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', 422, "model"),
        (b'{"model": "upstream", "messages": "hi"}', 422, "messages"),
        (b'{"model": "upstream", "messages": [{"role": "wizard", "content": "x"}]}', 422, "role"),
        (b'{"model": "upstream", "messages": [{"role": "user", "content": "x"}], "top_p": 7}',
         422, "top_p"),
        (b'{"model": "upstream", "messages": [{"role": "user", "content": "x"}], "stream": [1]}',
         422, "stream"),
    ],
)  # fmt: skip
def test_bad_bodies(
    gateway: RunningGateway, fake: FakeOpenAI, content: bytes, status: int, fragment: str
) -> None:
    error = _assert_error(_post(gateway, content), status)
    assert fragment in str(error["message"])
    assert fake.requests == []


def test_huge_chunked_body_without_length_is_413(gateway: RunningGateway) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"model": "smart", "messages": [{"role": "user", "content": "'
        for _ in range(200):
            yield b"x" * 1024
        yield b'"}]}'

    _assert_error(httpx.post(gateway.url + URL, content=body()), 413)


def test_declared_length_over_the_limit_is_413_before_reading(gateway: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n"
        )
        sock.settimeout(10)
        reply = b""
        while b'"request_too_large"' not in reply:
            part = sock.recv(65536)  # the reply may arrive in more than one segment
            if not part:
                break
            reply += part
    assert reply.startswith(b"HTTP/1.1 413")
    assert b'"request_too_large"' in reply


def test_slow_client_gets_408(gateway: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        sock.settimeout(10)
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408")
    assert b'"request_timeout"' in reply


def test_unknown_path_is_404_json(gateway: RunningGateway) -> None:
    _assert_error(httpx.get(gateway.url + "/v2/everything"), 404)


def test_wrong_method_is_405_json(gateway: RunningGateway) -> None:
    response = httpx.get(gateway.url + URL)
    _assert_error(response, 405)
    assert response.headers["allow"] == "POST"


def test_the_gateway_keeps_serving_after_bad_input(gateway: RunningGateway) -> None:
    for _ in range(3):
        _post(gateway, b"\x00\x01garbage")
    started = time.monotonic()
    ok = httpx.post(
        gateway.url + URL,
        json={"model": "smart", "messages": [{"role": "user", "content": "still here"}]},
    )
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"] == "still here"
    assert time.monotonic() >= started
