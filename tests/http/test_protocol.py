"""The gateway's uvicorn protocol sends a response's head and body in one write."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from turnout.http.protocol import _HeadHoldingTransport

from .conftest import RunningGateway

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    """The real transport's side: what was sent, in which calls."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.calls.append(b"".join(parts))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    real = Recorder()
    transport = _HeadHoldingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    transport.write(b"{}")
    assert real.calls == [HEAD + b"{}"]
    await asyncio.sleep(0)  # the end-of-step flush finds nothing left
    assert real.calls == [HEAD + b"{}"]


async def test_a_head_alone_leaves_at_the_end_of_the_step() -> None:
    real = Recorder()
    transport = _HeadHoldingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    continue_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
    transport.write(continue_100)
    assert real.calls == []
    await asyncio.sleep(0)
    assert real.calls == [continue_100]
    transport.write(b"data: {}\n\n")  # anything that is not a head goes straight out
    assert real.calls == [continue_100, b"data: {}\n\n"]


async def test_closing_sends_what_is_held_first() -> None:
    real = Recorder()
    transport = _HeadHoldingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    transport.close()
    assert real.calls == [HEAD] and real.closed
    assert transport.get_extra_info("peername") == "info:peername"  # the rest is the real one's


def test_over_loopback_a_completion_arrives_whole_and_keeps_the_connection(
    gateway: RunningGateway,
) -> None:
    body = b'{"model": "smart", "messages": [{"role": "user", "content": "one write"}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body) + body
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        for _ in range(2):  # kept alive: the second answer comes on the same connection
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":", 1)[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
            )
            while len(rest) < length:
                rest += sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200") and b'"one write"' in rest
