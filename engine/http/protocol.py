"""uvicorn's httptools protocol, writing each response's head and body in one send.

uvicorn writes the status line and headers of a response as soon as the app
sends ``http.response.start``, and the body as a second write: two ``send``
calls and two TCP segments per response. On loopback and in VMs a ``send`` is
dear (the receiver's side of TCP runs inside it), and the client wakes twice.
This protocol gives uvicorn a transport that holds a response head until the
next write (the body) and sends both together; a head with nothing after it in
the same loop step (a stream waiting for its first chunk, a 100 Continue) goes
out on its own at the end of the step. benchmarks/RESULTS.md has the numbers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import structlog
from turnout.http.disconnect import EXTENSION, ConnectionWatch
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "HEADER_TIMEOUT",
    "SEND_TIMEOUT",
    "CoalescingHttpToolsProtocol",
    "GuardedHttpToolsProtocol",
]

HEADER_TIMEOUT = "turnout_header_timeout"
SEND_TIMEOUT = "turnout_send_timeout"

_log = structlog.get_logger("turnout.http")


class _HeadHoldingTransport:
    """A transport that joins a response head with the write after it."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif data[:5] == b"HTTP/" and data[-4:] == b"\r\n\r\n":
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` over a transport that sends a response's head with its body.

    A lost connection cancels the request task the app armed on the
    connection's ``ConnectionWatch``: each request's scope carries it as
    ``extensions["turnout.disconnect"]`` (``turnout.http.disconnect``), so no
    task per request waits for ``http.disconnect``.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._watch = ConnectionWatch()
        super().connection_made(_HeadHoldingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        scope = cast("dict[str, Any]", self.scope)
        extensions = scope.get("extensions")
        if extensions is None:
            scope["extensions"] = {EXTENSION: self._watch}
        else:
            extensions[EXTENSION] = self._watch
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._watch.connection_lost()


class GuardedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """The coalescing protocol, refusing request heads that are too big or too slow,
    and dropping clients that stop reading their response.

    uvicorn's httptools protocol buffers a request head for as long and as large
    as a client cares to send it: thousands of connections trickling partial
    headers, or one 64 MiB header on ``/health``, cost the gateway memory and
    sockets before any handler runs. Here the head's raw bytes are counted as
    they arrive (431 past ``max_header_bytes``) and the head must be complete
    within ``header_timeout`` seconds of its first byte (408 otherwise); either
    answer closes the connection. Both come from uvicorn's config, so worker
    processes get them too: ``h11_max_incomplete_event_size`` and the
    ``HEADER_TIMEOUT`` attribute (uvicorn has no setting of its own for it).

    A client that stops reading fills the socket's buffers; the transport then
    pauses writing and the app's next ``send`` waits, holding its upstream
    connection (a stream) and its budget hold. One timer starts when writing
    pauses and stops when it resumes: a connection whose writes stay paused for
    ``send_timeout`` seconds (config attribute ``SEND_TIMEOUT``) is aborted, which
    uvicorn reports to the app as ``http.disconnect``, so the request is cancelled
    as if the client had left (its upstream call closed, its hold released).
    Nothing runs per write.
    """

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_header_bytes = config.h11_max_incomplete_event_size or 64 * 1024
        self.header_timeout = getattr(config, HEADER_TIMEOUT, 10.0)
        self.send_timeout = getattr(config, SEND_TIMEOUT, 30.0)
        self._send_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._in_head = True
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout, self._head_too_slow
        )

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)
        super().data_received(data)
        if self._in_head and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(
                    431,
                    "headers_too_large",
                    f"the request head is larger than the gateway's limit of "
                    f"{self.max_header_bytes} bytes; send fewer or smaller headers",
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request on this connection: its timer starts with its bytes

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._stop_send_timer()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout, self._stopped_reading)

    def resume_writing(self) -> None:
        self._stop_send_timer()
        super().resume_writing()

    def _stop_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _stopped_reading(self) -> None:
        self._send_timer = None
        if self.flow is not None and self.flow.write_paused and not self.transport.is_closing():
            _log.warning(
                "client stopped reading its response; connection closed",
                client=f"{self.client[0]}:{self.client[1]}" if self.client else None,
                send_timeout_s=self.send_timeout,
            )
            self.transport.abort()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and self._head_bytes > 0:
            self._refuse(
                408,
                "request_timeout",
                f"the request head did not arrive within {self.header_timeout:g}s",
            )
        elif self._in_head:
            self.transport.close()  # an idle connection that never spoke

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refused = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        body = json.dumps(
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": code,
                    "message": message,
                    "param": None,
                },
                "status_code": status,
            }
        ).encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, reason, len(body)) + body
        )
        self.transport.close()
