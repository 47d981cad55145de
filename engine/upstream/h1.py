"""One HTTP/1.1 connection of turnout's own upstream client (issue 18).

``H1Connection`` is an asyncio protocol fed to httptools' response parser: it
carries one exchange at a time (a request written whole, then its answer),
and says when its head, body bytes or end arrived, or how the connection
broke. ``Deadline`` is the one timer a request runs under. ``Decoder`` undoes
gzip and deflate content-encodings. The pooling (``turnout.upstream.h1_pool``)
and the retries and ``Upstream`` (``turnout.upstream.h1_upstream``) build on them.

A response body (as received, and again once decoded) is capped at
``MAX_BODY`` bytes, so an upstream cannot exhaust the gateway's memory; past
it the exchange fails as CONNECTION.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import httptools
from turnout.errors import FailureClass
from turnout.upstream.interface import UpstreamError

__all__ = ["MAX_BODY", "Deadline", "Decoder", "H1Connection", "ReplyHeaders"]

MAX_BODY = 64 * 1024 * 1024
"""The largest response body read from an upstream (64 MiB)."""

_HIGH_WATER = 1 << 20  # buffered body bytes before the socket stops being read
_NO_BODY_STATUS = frozenset({204, 304})


class ReplyHeaders(Mapping[str, str]):
    """Response headers, case-insensitive; repeated fields joined with ``", "``."""

    __slots__ = ("_fields",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        fields: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            fields[key] = f"{fields[key]}, {text}" if key in fields else text
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"ReplyHeaders({self._fields!r})"


class Deadline:
    """The one timer of one request.

    ``end`` is when the request's time is up (None: never). Each wait is
    bounded by ``end`` and by its own phase limit (the pool wait, the connect,
    the read timeout between bytes); a single ``loop.call_at`` handle serves
    them all: it is moved earlier when a wait needs it to be, and when it fires
    before the current wait is due it re-arms itself, so a stream whose reads
    keep arriving costs no timer per read.
    """

    __slots__ = ("_due", "_handle", "_loop", "_what", "end", "expired", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        self._loop = loop
        self.end = None if timeout is None else loop.time() + timeout
        self.waiter: asyncio.Future[Any] | None = None
        self.expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._what = ""

    async def wait(self, fut: asyncio.Future[Any], limit: float | None, what: str) -> Any:
        """``fut``'s result; TIMEOUT (naming ``what``) when it is not done within
        ``limit`` seconds from now or by ``end``. A task passed as ``fut`` is
        cancelled when it times out."""
        due = self.end
        if limit is not None:
            at = self._loop.time() + limit
            if due is None or at < due:
                due = at
        if due is None:
            return await fut
        self._due, self._what, self.waiter = due, what, fut
        handle = self._handle
        if handle is None or handle.when() > due:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(due, self._fire)
        try:
            return await fut
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.expired and fut.cancelled() and (task is None or not task.cancelling()):
                raise self.timeout() from None
            raise
        finally:
            self.waiter = None

    def timeout(self) -> UpstreamError:
        return UpstreamError(FailureClass.TIMEOUT, f"timed out {self._what}")

    def _fire(self) -> None:
        self._handle = None
        fut = self.waiter
        if fut is None or fut.done():
            return
        if self._due - self._loop.time() > 0.001:
            self._handle = self._loop.call_at(self._due, self._fire)
            return
        self.expired = True
        if isinstance(fut, asyncio.Task):
            fut.cancel()
        else:
            fut.set_exception(self.timeout())

    def cancel(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()


class Decoder:
    """Undoes a response's content-encoding (gzip, deflate; others pass as
    sent, as httpx2 does), the decoded size capped at ``limit``."""

    __slots__ = ("_limit", "_size", "_steps")

    def __init__(self, encoding: str, limit: int = MAX_BODY) -> None:
        steps: list[Any] = []
        for coding in reversed([c.strip().lower() for c in encoding.split(",")]):
            if coding in ("gzip", "x-gzip"):
                steps.append(zlib.decompressobj(zlib.MAX_WBITS | 16))
            elif coding == "deflate":
                steps.append(None)  # zlib-wrapped or raw: decided by the first bytes
            elif coding not in ("identity", ""):
                steps = []
                break
        self._steps = steps
        self._limit = limit
        self._size = 0

    @property
    def active(self) -> bool:
        return bool(self._steps)

    def decode(self, data: bytes) -> bytes:
        for i, step in enumerate(self._steps):
            if step is None:
                if not data:
                    continue
                raw = bool(data) and (data[0] & 0x0F) != 8
                step = self._steps[i] = zlib.decompressobj(
                    -zlib.MAX_WBITS if raw else zlib.MAX_WBITS
                )
            data = self._run(step, data)
        return data

    def flush(self) -> bytes:
        data = b""
        for step in self._steps:
            if step is not None:
                data = self._run(step, data) + step.flush()
        return data

    def _run(self, step: Any, data: bytes) -> bytes:
        room = self._limit - self._size + 1
        try:
            out: bytes = step.decompress(data, room)
        except zlib.error as exc:
            raise UpstreamError(
                FailureClass.CONNECTION, f"undecodable response body: {exc}"
            ) from exc
        self._size += len(out)
        if step.unconsumed_tail or self._size > self._limit:
            raise _too_large(self._limit, "decoded ")
        return out


class _Surplus(Exception):
    """An answer began after the one asked for was complete."""


def _too_large(limit: int, what: str = "") -> UpstreamError:
    return UpstreamError(
        FailureClass.CONNECTION,
        f"upstream response body over the {what}size cap of {limit // (1024 * 1024)} MiB",
    )


class H1Connection(asyncio.Protocol):
    """One client connection to ``origin``: one exchange at a time.

    ``send`` writes a request and starts a new exchange; its answer's state
    (``status``, ``headers``, ``chunks``, ``complete``) is filled in as bytes
    arrive, and ``wake`` resolves the future the reader waits on. A broken
    connection sets ``error`` (CONNECTION); ``stale`` says it ended cleanly
    before any byte of the answer, as a keep-alive connection the server had
    already dropped does.
    """

    def __init__(self, origin: str, max_body: int = MAX_BODY) -> None:
        self.origin = origin
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.error: UpstreamError | None = None
        self.busy = False
        self.got_bytes = False
        self.stale = False
        self.head = False
        self.complete = False
        self.until_close = False
        self.no_body = False
        self.keep_alive = False
        self.status = 0
        self.reason = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.size = 0
        self.paused = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: this connection cannot be trusted
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(f"{self.origin} switched protocols")
        except httptools.HttpParserError as exc:
            if self.complete:  # bytes past the answer: it stands, the connection does not
                self.close()
            elif self.error is None:
                self._fail(f"malformed response from {self.origin}: {exc}")

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if not self.busy or self.complete or self.error is not None:
            self.wake()
            return
        if self.head and self.until_close and exc is None:
            self.complete = True  # a body read to the close
        elif not self.got_bytes:
            self.stale = exc is None
            reason = "closed" if exc is None else f"reset ({exc})"
            self.error = UpstreamError(
                FailureClass.CONNECTION, f"{self.origin} {reason} the connection before answering"
            )
        else:
            why = "closed" if exc is None else f"reset ({exc})"
            self.error = UpstreamError(
                FailureClass.CONNECTION, f"{self.origin} {why} the connection mid-response"
            )
        self.wake()

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Surplus

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim answer: the real one follows
            self.reason, self.raw_headers = b"", []
            return
        self.status = status
        framed = status in _NO_BODY_STATUS or self.no_body
        for name, value in self.raw_headers:
            lower = name.lower()
            if lower == b"content-length":
                framed = True
                try:
                    length = int(value)
                except ValueError:
                    length = 0
                if length > self.max_body:
                    self._fail(str(_too_large(self.max_body)))
                    return
            elif lower == b"transfer-encoding":
                framed = True
        self.until_close = not framed
        self.head = True
        if self.no_body:  # a HEAD answer: no body follows, and the parser cannot know
            self.complete = self.until_close = True
        self.wake()

    def on_body(self, body: bytes) -> None:
        if self.error is not None:
            return
        size = self.size = self.size + len(body)
        if size > self.max_body:
            self._fail(str(_too_large(self.max_body)))
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self.wake()

    def on_message_complete(self) -> None:
        if self.head and self.error is None:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()
            self.wake()

    # -- the exchange

    def send(self, data: bytes, *, no_body: bool = False) -> bool:
        """Write one request (head and body in one buffer) and expect its answer;
        False (nothing written) when the connection is already closed."""
        self.busy = True
        self.got_bytes = self.stale = self.head = self.complete = self.until_close = False
        self.keep_alive = False
        self.no_body = no_body
        self.error = None
        self.status, self.reason, self.raw_headers = 0, b"", []
        self.size = self.buffered = 0
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            self.stale = True
            self.error = UpstreamError(
                FailureClass.CONNECTION, f"{self.origin} closed the connection before answering"
            )
            return False
        transport.write(data)
        return True

    def take(self) -> bytes:
        """The body bytes received and not yet taken."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def wake(self) -> None:
        fut = self.waiter
        if fut is not None and not fut.done():
            fut.set_result(None)

    def finished(self) -> bool:
        """Whether the exchange ended cleanly and the connection can carry another."""
        self.busy = False
        return (
            self.complete
            and not self.closed
            and not self.until_close
            and self.error is None
            and self.keep_alive
        )

    def _fail(self, detail: str) -> None:
        self.error = UpstreamError(FailureClass.CONNECTION, detail)
        self.close()
        self.wake()

    def close(self) -> None:
        self.closed = True
        transport = self.transport
        if transport is not None:
            transport.abort()
