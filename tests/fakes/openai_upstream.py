"""A fake OpenAI chat-completions upstream that really listens on loopback.

Tests, gateway tests and benchmarks point real HTTP clients at it, so what it
sends is what a client would see from the real API: `chat.completion` JSON,
`chat.completion.chunk` Server-Sent Events ending in `data: [DONE]`, and
OpenAI-shaped error bodies. Faults (error statuses, delays, resets, truncated
or stalled streams, malformed bodies) happen on the wire, not in a mock.

    with FakeOpenAI() as fake:
        fake.script(Fault.status(503), Fault.status(429, retry_after=1))
        client = openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0)

A request's behaviour is the next scripted fault if any, else the one named by
its `x-fake-fault` header (see `Fault.parse`), else success: the assistant
echoes the last user message ("echo: <text>"), or calls the first tool when
the request has `tools` and that message contains "call_tool".

The server is a hand-rolled HTTP/1.1 asyncio protocol (keep-alive, Content-Length
and chunked request bodies) so it stays cheap enough to act as the upstream in
benchmarks: `python -m tests.fakes.openai_upstream --port 9100 --latency 50ms`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import signal
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from tests.fakes.faults import FAULT_HEADER, Fault, parse_duration
from tests.fakes.openai_wire import (
    CLOSE,
    DONE,
    RESET,
    Completion,
    Reply,
    deliver,
    error_object,
    error_reply,
    model_list,
    validate_chat_request,
)

__all__ = ["FAULT_HEADER", "FakeOpenAI", "Fault", "RecordedRequest", "parse_duration"]

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini")
_MAX_HEAD = 64 * 1024


class RecordedRequest(NamedTuple):
    """A request as the fake received it; `body` is the parsed JSON or None."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Settings:
    latency: float = 0.0
    chunk_delay: float = 0.0
    reply_words: int | None = None
    models: tuple[str, ...] = DEFAULT_MODELS
    record: bool = True


class _Upstream:
    """State shared by every connection: settings, the script, the record."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.script: deque[Fault] = deque()
        self.requests: list[RecordedRequest] = []
        self.connections: set[_Connection] = set()
        self.connection_count = 0
        self.abandoned = 0
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)

    def respond(
        self, method: str, target: str, headers: dict[str, str], raw: bytes, keep_alive: bool
    ) -> Reply:
        """Record the request, pick its fault, and say what to send back."""
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        if self.settings.record:
            self.requests.append(RecordedRequest(method, target, headers, body))
        ident = f"{self._id_prefix}{next(self._ids):016x}"
        latency = self.settings.latency
        try:
            fault: Fault | None = self.script.popleft()
        except IndexError:
            spec = headers.get(FAULT_HEADER)
            try:
                fault = Fault.parse(spec) if spec else None
            except ValueError as exc:
                problem = error_object(400, str(exc), FAULT_HEADER)
                return error_reply(400, problem, request_id=ident, keep_alive=keep_alive)
        options = {"request_id": ident, "keep_alive": keep_alive, "latency": latency}
        if fault is not None and fault.kind in ("status", "reset"):
            return deliver(fault, b"", **options)  # before the request is even looked at

        path = target.partition("?")[0]
        if path == "/v1/chat/completions" and method == "POST":
            if bad_json:
                problem = error_object(400, "We could not parse the JSON body of your request.")
            else:
                problem = validate_chat_request(body)
            if problem is not None:
                return error_reply(400, problem, **options)
            completion = Completion(body, "chatcmpl-" + ident, self.settings.reply_words)
            if body.get("stream"):
                events = completion.events()
                return deliver(fault, b"", events, chunk_delay=self.settings.chunk_delay, **options)
            return deliver(fault, completion.json(), **options)
        if path == "/v1/models" and method == "GET":
            return deliver(fault, model_list(self.settings.models), **options)
        problem = error_object(404, f"Invalid URL ({method} {path})", code="unknown_url")
        return error_reply(404, problem, **options)

    def error(self, status: int, message: str) -> Reply:
        """A reply for a request the fake could not even parse; closes the connection."""
        ident = f"{self._id_prefix}{next(self._ids):016x}"
        return error_reply(
            status, error_object(status, message), request_id=ident, keep_alive=False
        )


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, play their replies in order."""

    def __init__(self, upstream: _Upstream, loop: asyncio.AbstractEventLoop) -> None:
        self.upstream = upstream
        self.loop = loop
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.reply: Reply | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.upstream.connections.add(self)
        self.upstream.connection_count += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.upstream.connections.discard(self)
        if self.reply is not None and not self.closing:
            self.upstream.abandoned += 1
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
        while not self.closing and self.reply is None:
            try:
                request = self.take_request()
                if request is None:
                    return
                self.reply = self.upstream.respond(*request)
            except _BadRequest as exc:
                self.closing = True
                self.reply = self.upstream.error(exc.status, str(exc))
            except Exception as exc:  # a bug in the fake: say so on the wire
                self.closing = True
                self.reply = self.upstream.error(500, f"fake upstream bug: {exc!r}")
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

    def take_request(self) -> tuple[str, str, dict[str, str], bytes, bool] | None:
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
        return method, target, headers, raw, keep_alive


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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


async def _serve(upstream: _Upstream, sock: socket.socket) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Connection(upstream, loop), sock=sock, backlog=1024)


async def _close(upstream: _Upstream, server: asyncio.Server) -> None:
    server.close()
    for connection in list(upstream.connections):
        connection.abort()
    await server.wait_closed()
    await asyncio.sleep(0)  # let aborted transports run connection_lost


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


# ---------------------------------------------------------------- public API


class FakeOpenAI:
    """A fake OpenAI upstream on its own thread and event loop.

    :param latency: seconds (or "50ms") before every response's first byte.
    :param reply_words: make every reply exactly this many words (benchmarks).
    :param chunk_delay: seconds between SSE events of every stream.
    :param models: ids listed by `GET /v1/models`.
    :param record: keep `requests` (turn off for long benchmark runs).
    """

    def __init__(
        self,
        latency: float | str = 0.0,
        reply_words: int | None = None,
        *,
        chunk_delay: float | str = 0.0,
        models: Iterable[str] = DEFAULT_MODELS,
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        settings = _Settings(
            parse_duration(latency), parse_duration(chunk_delay), reply_words, tuple(models), record
        )
        self._upstream = _Upstream(settings)
        self._host, self._port = host, port
        self._loop_factory = loop_factory or asyncio.new_event_loop
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`, what an OpenAI client takes as base_url."""
        return f"http://{self._host}:{self._port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        return list(self._upstream.requests)

    @property
    def connection_count(self) -> int:
        """TCP connections accepted so far (shows whether clients keep them alive)."""
        return self._upstream.connection_count

    @property
    def abandoned(self) -> int:
        """Requests whose client closed the connection before the whole reply was
        sent (a delayed or stalled reply the client gave up on)."""
        return self._upstream.abandoned

    def script(self, *faults: Fault | str) -> None:
        """Queue behaviours, FIFO: each is used by one request, then the default."""
        self._upstream.script.extend(f if isinstance(f, Fault) else Fault.parse(f) for f in faults)

    def reset(self) -> None:
        """Forget the script, the recorded requests and the connection counts."""
        self._upstream.script.clear()
        self._upstream.requests.clear()
        self._upstream.connection_count = 0
        self._upstream.abandoned = 0

    def start(self) -> FakeOpenAI:
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI is already running")
        sock = _listen(self._host, self._port)
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run,
            args=(sock, ready, failure),
            name=f"FakeOpenAI:{self._port}",
            daemon=True,
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
            raise RuntimeError("FakeOpenAI thread did not stop")
        self._thread = self._loop = self._stopped = None

    def _run(
        self, sock: socket.socket, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        loop = self._loop_factory()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(sock, ready))
        except BaseException as exc:
            failure.append(exc)
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self, sock: socket.socket, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        try:
            server = await _serve(self._upstream, sock)
        except BaseException:
            sock.close()
            raise
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            await _close(self._upstream, server)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeOpenAI:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.openai_upstream", description="Run the fake OpenAI upstream."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--latency", default="0", help="before each response, e.g. 50ms")
    parser.add_argument("--chunk-delay", default="0", help="between SSE events, e.g. 10ms")
    parser.add_argument("--reply-words", type=int, default=None)
    parser.add_argument("--record", action="store_true", help="keep every request in memory")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args(argv)

    settings = _Settings(
        parse_duration(args.latency), parse_duration(args.chunk_delay), args.reply_words,
        record=args.record,
    )  # fmt: skip
    upstream = _Upstream(settings)
    loop_name = args.loop
    if loop_name != "asyncio":
        try:
            import uvloop  # type: ignore[import-not-found]

            loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            loop_name = "uvloop"
        except ImportError:
            if loop_name == "uvloop":
                raise
            loop_factory, loop_name = asyncio.new_event_loop, "asyncio"
    else:
        loop_factory = asyncio.new_event_loop

    async def run() -> None:
        sock = _listen(args.host, args.port)
        server = await _serve(upstream, sock)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        host, port = sock.getsockname()[:2]
        print(f"fake OpenAI upstream on http://{host}:{port}/v1 ({loop_name}, pid {os.getpid()})",
              flush=True)  # fmt: skip
        try:
            await stop.wait()
        finally:
            await _close(upstream, server)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(run())


if __name__ == "__main__":
    main()
