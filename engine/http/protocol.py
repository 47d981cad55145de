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
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol"]


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
    """``HttpToolsProtocol`` over a transport that sends a response's head with its body."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_HeadHoldingTransport(transport, self.loop))  # type: ignore[arg-type]
