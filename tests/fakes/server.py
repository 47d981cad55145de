"""One loopback HTTP server for every fake upstream: it takes a handler.

The idea of ``httpx.MockTransport(handler)`` over real loopback HTTP: a plain
function plays the upstream. It gets each parsed `Request` and returns a
`Reply` (the exact bytes to write, the pauses between them and how the
exchange ends), so a fault can happen on the wire: a pause, a reset, a body cut
short, a stream left hanging.

    def handler(request: Request) -> Reply:
        return Reply.json(200, {"ok": True})

    with LoopbackServer(handler) as server:
        httpx.get(f"http://127.0.0.1:{server.port}/anything")

The server is a hand-rolled HTTP/1.1 asyncio protocol (keep-alive,
Content-Length and chunked request bodies) on its own thread and event loop,
cheap enough to play the upstream in benchmarks. `tests.fakes.upstream` builds
the vendor fakes' shared request handling (record, script, faults) on it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

__all__ = [
    "CLOSE",
    "DONE",
    "RESET",
    "STALL",
    "Handler",
    "LoopbackServer",
    "Reply",
    "Request",
    "body_reply",
    "http_chunk",
    "http_head",
    "stream_reply",
]

_MAX_HEAD = 64 * 1024
DONE, CLOSE, RESET, STALL = "done", "close", "reset", "stall"
_SETTLE = 0.005  # lets the client read a partial response before the connection ends

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large",
    422: "Unprocessable Entity", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Request:
    """One request as it came off the wire; header names are lower-case."""

    method: str
    target: str
    headers: dict[str, str]
    raw: bytes
    keep_alive: bool

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]


class Reply:
    """What to write and after which pause, then how the exchange ends: DONE
    (keep the connection for the next request), CLOSE (FIN), RESET (RST) or
    STALL (stay open and silent)."""

    __slots__ = ("end", "steps")

    def __init__(self, steps: Iterable[tuple[float, bytes]], end: str = DONE) -> None:
        self.steps = deque(steps)
        self.end = end

    @classmethod
    def json(
        cls, status: int, value: Any, headers: Iterable[str] = (), *, keep_alive: bool = True
    ) -> Reply:
        """A complete JSON response (a handler's one-liner)."""
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        return body_reply(status, "application/json", body, headers, keep_alive=keep_alive)


Handler = Callable[[Request], Reply]


def http_head(
    status: int, content_type: str, length: int | None, extra: Iterable[str] = ()
) -> bytes:
    """A response head: Content-Length when `length` is known, else chunked."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"content-type: {content_type}"]
    lines.append("transfer-encoding: chunked" if length is None else f"content-length: {length}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def body_reply(
    status: int,
    content_type: str,
    body: bytes,
    extra: Iterable[str] = (),
    *,
    fault: str = "ok",
    wait: float = 0.0,
    keep_alive: bool = True,
) -> Reply:
    """A Content-Length response; `fault` may cut it: `reset_mid_body` (half,
    then RST), `truncated_stream` (half, then FIN), `stall_after_first` (half,
    then silence). Any other kind sends it whole."""
    if not keep_alive:
        extra = [*extra, "connection: close"]
    head = http_head(status, content_type, len(body), extra)
    half = head + body[: len(body) // 2]
    if fault == "reset_mid_body":
        return Reply([(wait, half), (_SETTLE, b"")], RESET)
    if fault == "truncated_stream":
        return Reply([(wait, half), (_SETTLE, b"")], CLOSE)
    if fault == "stall_after_first":
        return Reply([(wait, half)], STALL)
    return Reply([(wait, head + body)], DONE if keep_alive else CLOSE)


def stream_reply(
    content_type: str,
    frames: list[bytes],
    extra: Iterable[str] = (),
    *,
    fault: str = "ok",
    wait: float = 0.0,
    gap: float = 0.0,
    keep_alive: bool = True,
    stall_after: int = 1,
) -> Reply:
    """A 200 chunked stream of `frames`, `gap` seconds apart; `fault` may cut it:
    `reset_mid_body` / `truncated_stream` send two frames and half of the third
    (the chunk header promising more), then RST / FIN; `stall_after_first` sends
    `stall_after` frames, then silence."""
    extra = [*extra, "cache-control: no-cache"] if content_type.startswith("text/") else [*extra]
    if not keep_alive:
        extra.append("connection: close")
    head = http_head(200, content_type, None, extra)
    if fault in ("reset_mid_body", "truncated_stream"):
        cut = frames[2]
        partial = b"%x\r\n%s" % (len(cut), cut[: len(cut) // 2])
        sent = head + b"".join(http_chunk(f) for f in frames[:2]) + partial
        return Reply([(wait, sent), (_SETTLE, b"")], RESET if fault == "reset_mid_body" else CLOSE)
    if fault == "stall_after_first":
        return Reply([(wait, head + b"".join(map(http_chunk, frames[:stall_after])))], STALL)
    end = DONE if keep_alive else CLOSE
    if gap <= 0:
        return Reply([(wait, head + b"".join(map(http_chunk, frames)) + b"0\r\n\r\n")], end)
    steps = [(wait, head)] + [(gap, http_chunk(f)) for f in frames]
    steps[-1] = (gap, steps[-1][1] + b"0\r\n\r\n")
    return Reply(steps, end)


def _plain_error(status: int, message: str) -> Reply:
    return Reply.json(status, {"error": {"message": message}}, keep_alive=False)


# ---------------------------------------------------------------- the protocol


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, play their replies in order."""

    def __init__(self, server: LoopbackServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.reply: Reply | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)
        self.server.connection_count += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.reply is not None and not self.closing:
            self.server.abandoned += 1
        if self.timer is not None:
            self.timer.cancel()
        self.closing = True
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.reply is None:
            self.serve()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def abort(self) -> None:
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.abort()

    def serve(self) -> None:
        """Answer every complete request in the buffer, one at a time."""
        server = self.server
        while not self.closing and self.reply is None:
            try:
                request = self.take_request()
                if request is None:
                    return
                self.reply = server.handler(request)
            except _BadRequest as exc:
                self.closing = True
                self.reply = server.on_error(exc.status, str(exc))
            except Exception as exc:  # a bug in the fake: say so on the wire
                self.closing = True
                self.reply = server.on_error(500, f"fake upstream bug: {exc!r}")
            self.play()

    def play(self) -> None:
        reply = self.reply
        transport = self.transport
        if reply is None or transport is None:
            return
        while reply.steps:
            wait, data = reply.steps[0]
            if wait > 0:
                reply.steps[0] = (0.0, data)
                self.timer = self.loop.call_later(wait, self.resume)
                return
            reply.steps.popleft()
            if data:
                transport.write(data)
        self.timer = None
        if reply.end == DONE:
            self.reply = None
        elif reply.end == CLOSE:
            self.closing = True
            transport.close()
        elif reply.end == RESET:
            self.closing = True
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # STALL: keep the connection open and silent.

    def resume(self) -> None:
        self.play()
        if self.reply is None:
            self.serve()

    def take_request(self) -> Request | None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                raise _BadRequest(431, "Request header fields too large.")
            return None
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, f"Malformed request line: {lines[0][:100]!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest(400, f"Malformed header line: {line[:100]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            decoded = _dechunk(buffer, start)
            if decoded is None:
                return None
            raw, stop = decoded
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                raise _BadRequest(400, "Invalid Content-Length.") from None
            if len(buffer) < start + length:
                return None
            raw, stop = bytes(buffer[start : start + length]), start + length
        del buffer[:stop]
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection
        )
        if not keep_alive:
            self.closing = True
        return Request(method, target, headers, raw, keep_alive)


def _dechunk(buffer: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a complete chunked body starting at `pos`, or None if incomplete."""
    out = bytearray()
    while True:
        eol = buffer.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buffer[pos:eol]).split(b";")[0], 16)
        except ValueError:
            raise _BadRequest(400, "Malformed chunked body.") from None
        pos = eol + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", pos)
            while trailer_end > pos:  # skip trailer fields
                pos = trailer_end + 2
                trailer_end = buffer.find(b"\r\n", pos)
            return (bytes(out), trailer_end + 2) if trailer_end >= 0 else None
        if len(buffer) < pos + size + 2:
            return None
        out += buffer[pos : pos + size]
        pos += size + 2


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


# ---------------------------------------------------------------- the server


class LoopbackServer:
    """Serve `handler` on loopback, on its own thread and event loop.

    :param handler: answers each `Request` with a `Reply`; an exception it
        raises becomes a 500 that names it (and closes the connection).
    :param on_error: the reply for a request that cannot even be parsed (431,
        400) or that the handler failed on (500); a vendor fake passes its own
        error body. Defaults to `{"error": {"message": ...}}`.
    :param port: 0 picks a free port (read it from `port` after `start`).
    :param loop_factory: the event loop to run (e.g. `uvloop.new_event_loop`).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        on_error: Callable[[int, str], Reply] = _plain_error,
        host: str = "127.0.0.1",
        port: int = 0,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self.handler = handler
        self.on_error = on_error
        self.host, self.port = host, port
        self.connections: set[_Connection] = set()
        self.connection_count = 0
        self.abandoned = 0
        self._loop_factory = loop_factory or asyncio.new_event_loop
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LoopbackServer:
        if self._thread is not None:
            raise RuntimeError("the loopback server is already running")
        sock = _listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(sock, ready, failure), name=f"fake:{self.port}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Abort open connections, close the server, and join its thread."""
        thread, loop, stopped = self._thread, self._loop, self._stopped
        if thread is None or loop is None or stopped is None:
            return
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=10)
        if thread.is_alive():
            raise RuntimeError("the loopback server's thread did not stop")
        self._thread = self._loop = self._stopped = None

    def run(self, on_ready: Callable[[int], None] = lambda port: None) -> None:
        """Serve in the foreground until SIGINT or SIGTERM (a command line's main)."""

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            sock = _listen(self.host, self.port)
            self.port = sock.getsockname()[1]
            await self._serve(sock, stop, lambda: on_ready(self.port))

        with asyncio.Runner(loop_factory=self._loop_factory) as runner:
            runner.run(main())

    def _run(
        self, sock: socket.socket, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        loop = self._loop_factory()
        self._loop = loop
        try:
            self._stopped = asyncio.Event()
            loop.run_until_complete(self._serve(sock, self._stopped, ready.set))
        except BaseException as exc:
            failure.append(exc)
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(
        self, sock: socket.socket, stop: asyncio.Event, ready: Callable[[], None]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: _Connection(self, loop), sock=sock, backlog=1024
            )
        except BaseException:
            sock.close()
            raise
        ready()
        try:
            await stop.wait()
        finally:
            server.close()
            for connection in list(self.connections):
                connection.abort()
            await server.wait_closed()
            await asyncio.sleep(0)  # let aborted transports run connection_lost

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
