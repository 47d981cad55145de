"""``H1Upstream``: turnout's own HTTP/1.1 client, the engine's default ``Upstream``.

A small client on asyncio protocols and httptools (``turnout.upstream.h1``),
chosen by measurement (benchmarks/RESULTS.md, "Upstream client: our own
HTTP/1.1 client vs aiohttp (issue 18)"): a fraction of aiohttp's CPU per
request and per stream, with no httpx2 object on its path.

- Connections are pooled per (scheme, host, port), at most ``max_connections``
  open per origin; a request past the cap waits in line, and that wait counts
  against its deadline (and the read timeout). Idle keep-alive connections
  expire after ``keepalive_expiry`` seconds.
- A reused keep-alive connection the server had already closed (a clean close
  before any byte of the answer) is retried once on a fresh connection; once
  a byte of an answer arrived, or when the server resets the connection, the
  request fails as CONNECTION, never sent twice.
- Each request runs under one timer (``Deadline``): the connect is bounded by
  ``min(connect_timeout, time left)``, every wait for bytes by
  ``min(read_timeout, time left)``; past either it fails as TIMEOUT.
- TLS verifies certificates and sends SNI, with ``ssl.create_default_context``
  over ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set (as httpx2 does), else
  certifi's roots (the CAs the httpx2 and aiohttp paths trust).
- Request bodies go with a content-length; answers are read by
  content-length, chunked, or to the close, gzip and deflate decoded, at most
  ``MAX_BODY`` (64 MiB) before or after decoding (past it: CONNECTION).
- Header values holding CR, LF or NUL are never sent (CONNECTION, naming the
  header).

Not implemented: HTTP proxies and HTTP/2. A URL an environment proxy
(``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY``, less ``NO_PROXY``) applies
to is sent through ``fallback``, the httpx2 path, which honours them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from turnout.errors import FailureClass
from turnout.upstream.h1 import MAX_BODY, Deadline, Decoder, H1Connection, ReplyHeaders
from turnout.upstream.h1_pool import H1Pool, default_ssl_context
from turnout.upstream.interface import Reply, StreamReply, Upstream, UpstreamError, UpstreamRequest

__all__ = ["H1Upstream"]

_MAX_CACHED = 256
_UNSAFE = ("\r", "\n", "\0")


def _user_agent() -> str:
    try:
        return f"turnout/{importlib.metadata.version('turnout')}"
    except importlib.metadata.PackageNotFoundError:
        return "turnout"


_DEFAULT_HEADERS = {
    "accept": "*/*",
    "accept-encoding": "gzip, deflate",
    "user-agent": _user_agent(),
}


@dataclass(frozen=True, slots=True)
class _Target:
    pool: H1Pool | None  # None: an environment proxy applies, take the fallback
    target: str
    host: str


class _H1StreamReply:
    """A ``StreamReply`` whose body is read from ``conn`` as it arrives."""

    __slots__ = (
        "_conn",
        "_deadline",
        "_decoder",
        "_upstream",
        "headers",
        "reason_phrase",
        "status_code",
    )

    def __init__(self, upstream: H1Upstream, conn: H1Connection, deadline: Deadline) -> None:
        self._upstream = upstream
        self._conn = conn
        self._deadline = deadline
        self.status_code = conn.status
        self.headers: Mapping[str, str] = ReplyHeaders(conn.raw_headers)
        self.reason_phrase = conn.reason.decode("latin-1")
        encoding = self.headers.get("content-encoding")
        decoder = None if encoding is None else Decoder(encoding, conn.max_body)
        self._decoder = decoder if decoder is not None and decoder.active else None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    async def chunks(self) -> AsyncIterator[bytes]:
        decoder = self._decoder
        next_chunk = self._upstream._next_chunk
        conn, deadline = self._conn, self._deadline
        while (data := await next_chunk(conn, deadline)) is not None:
            if decoder is not None:
                data = decoder.decode(data)
            if data:
                yield data
        if decoder is not None and (tail := decoder.flush()):
            yield tail

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])


class H1Upstream:
    """``Upstream`` over pooled HTTP/1.1 connections of turnout's own.

    :param connect_timeout: seconds to open a connection (TCP and TLS).
    :param read_timeout: seconds any wait for the answer's bytes may last.
    :param max_connections: open connections per origin.
    :param keepalive_expiry: seconds an idle connection is kept.
    :param ssl_context: for https; default ``default_ssl_context()``.
    :param fallback: builds the ``Upstream`` for URLs an environment proxy
        applies to (the engine passes its httpx2 path); without one, such URLs
        are sent directly.
    :param max_body: the largest answer body read, before and after decoding.

    Like any pooled client it belongs to the event loop it first sends on.
    """

    def __init__(
        self,
        *,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = 60.0,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        fallback: Callable[[], Upstream] | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.max_body = max_body
        self._ssl_context = ssl_context
        self._fallback_factory = fallback
        self._fallback: Upstream | None = None
        self._proxies = urllib.request.getproxies_environment() if fallback is not None else {}
        self._pools: dict[tuple[str, str, int], H1Pool] = {}
        self._targets: dict[str, _Target] = {}
        self._heads: dict[tuple[object, ...], bytes] = {}
        self.closed = False

    # -- Upstream

    async def send(self, request: UpstreamRequest) -> Reply:
        target = self._target(request.url)
        pool = target.pool
        if pool is None:
            return await self._via_fallback().send(request)
        deadline = Deadline(pool.loop, request.timeout)
        conn = None
        try:
            conn = await self._exchange(pool, target, request, deadline)
            parts = []
            while (data := await self._next_chunk(conn, deadline)) is not None:
                parts.append(data)
        except BaseException:
            if conn is not None:
                conn.finished()
                pool.discard(conn)
            raise
        finally:
            deadline.cancel()
        if conn.finished():
            pool.release(conn)
        else:
            pool.discard(conn)
        headers = ReplyHeaders(conn.raw_headers)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        encoding = headers.get("content-encoding")
        if encoding is not None:
            decoder = Decoder(encoding, conn.max_body)
            if decoder.active:
                body = decoder.decode(body) + decoder.flush()
        return Reply(conn.status, headers, body, conn.reason.decode("latin-1"))

    @contextlib.asynccontextmanager
    async def stream(self, request: UpstreamRequest) -> AsyncIterator[StreamReply]:
        target = self._target(request.url)
        pool = target.pool
        if pool is None:
            async with self._via_fallback().stream(request) as reply:
                yield reply
            return
        deadline = Deadline(pool.loop, request.timeout)
        conn = None
        try:
            conn = await self._exchange(pool, target, request, deadline)
            yield _H1StreamReply(self, conn, deadline)
        finally:
            deadline.cancel()
            if conn is not None:
                if conn.finished():
                    pool.release(conn)
                else:
                    pool.discard(conn)

    async def aclose(self) -> None:
        """Close every idle connection; those in use close when their exchange ends."""
        self.closed = True
        pools, self._pools = self._pools, {}
        self._targets.clear()
        for pool in pools.values():
            pool.close()

    # -- one exchange

    async def _exchange(
        self, pool: H1Pool, target: _Target, request: UpstreamRequest, deadline: Deadline
    ) -> H1Connection:
        """A connection whose answer's head has arrived, the request sent on it."""
        data = self._head(target, request)
        no_body = request.method == "HEAD"
        retried = False
        while True:
            conn, reused = await pool.acquire(deadline, fresh=retried)
            if not conn.send(data, no_body=no_body):
                # closed while it idled: nothing was sent, so any other connection will do
                conn.finished()
                pool.discard(conn)
                if reused:
                    continue
                raise UpstreamError(FailureClass.CONNECTION, f"{pool.origin} closed the connection")
            try:
                while not conn.head:
                    error = conn.error
                    if error is not None:
                        raise UpstreamError(error.failure, error.detail)
                    conn.waiter = fut = pool.loop.create_future()
                    await deadline.wait(fut, pool.read_timeout, f"reading from {pool.origin}")
            except BaseException as exc:
                conn.waiter = None
                conn.finished()
                pool.discard(conn)
                if isinstance(exc, UpstreamError) and conn.stale and reused and not retried:
                    retried = True  # a stale keep-alive connection: once more, on a new one
                    continue
                raise
            conn.waiter = None
            return conn

    async def _next_chunk(self, conn: H1Connection, deadline: Deadline) -> bytes | None:
        """The body bytes received since the last call (waiting for some), or None
        at the body's end."""
        while True:
            if conn.chunks:
                return conn.take()
            error = conn.error
            if error is not None:
                raise UpstreamError(error.failure, error.detail)
            if conn.complete:
                return None
            conn.waiter = fut = asyncio.get_running_loop().create_future()
            try:
                await deadline.wait(fut, self.read_timeout, f"reading from {conn.origin}")
            finally:
                conn.waiter = None

    # -- parsed once per URL and header set

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if self.closed:
                raise UpstreamError(FailureClass.CONNECTION, "the upstream client is closed")
            target = self._parse(url)
            if len(self._targets) >= _MAX_CACHED:
                self._targets.clear()
            self._targets[url] = target
        return target

    def _parse(self, url: str) -> _Target:
        parts = urllib.parse.urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        if scheme not in ("http", "https") or not host:
            raise UpstreamError(
                FailureClass.CONNECTION, f"cannot send to {url!r}: not an http(s) URL"
            )
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as exc:
            raise UpstreamError(FailureClass.CONNECTION, f"cannot send to {url!r}: {exc}") from exc
        path = parts.path or "/"
        request_target = f"{path}?{parts.query}" if parts.query else path
        if any(c in request_target for c in (" ", *_UNSAFE)):
            raise UpstreamError(
                FailureClass.CONNECTION, f"refused to send to {url!r}: unsafe characters"
            )
        named = f"[{host}]" if ":" in host else host
        host_header = named if parts.port is None else f"{named}:{port}"
        if self._proxied(scheme, host, port):
            return _Target(None, request_target, host_header)
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            ssl_context = None
            if scheme == "https":
                ssl_context = self._ssl_context
                if ssl_context is None:
                    ssl_context = self._ssl_context = default_ssl_context()
            pool = self._pools[key] = H1Pool(
                scheme,
                host,
                port,
                ssl_context=ssl_context,
                limit=self.max_connections,
                keepalive_expiry=self.keepalive_expiry,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                max_body=self.max_body,
            )
        return _Target(pool, request_target, host_header)

    def _proxied(self, scheme: str, host: str, port: int) -> bool:
        proxies = self._proxies
        if not proxies or (scheme not in proxies and "all" not in proxies):
            return False
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # untyped
        return not bypass(f"{host}:{port}", proxies)

    def _via_fallback(self) -> Upstream:
        upstream = self._fallback
        if upstream is None:
            assert self._fallback_factory is not None
            upstream = self._fallback = self._fallback_factory()
        return upstream

    def _head(self, target: _Target, request: UpstreamRequest) -> bytes:
        headers = request.headers
        key = (request.method, target.target, target.host, *headers.items())
        head = self._heads.get(key)
        if head is None:
            merged = dict(_DEFAULT_HEADERS)
            for name, value in headers.items():
                merged[name.lower()] = value
            merged.pop("content-length", None)
            merged.pop("transfer-encoding", None)
            merged.pop("host", None)
            lines = [f"{request.method} {target.target} HTTP/1.1", f"host: {target.host}"]
            for name, value in merged.items():
                if any(c in name or c in value for c in _UNSAFE) or ":" in name:
                    raise UpstreamError(
                        FailureClass.CONNECTION,
                        f"refused to send header {name!r}: it holds CR, LF, NUL or a colon",
                    )
                lines.append(f"{name}: {value}")
            head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
            if len(self._heads) >= _MAX_CACHED:
                self._heads.clear()
            self._heads[key] = head
        body = request.body
        if body or request.method not in ("GET", "HEAD"):
            return b"%scontent-length: %d\r\n\r\n%s" % (head, len(body), body)
        return head + b"\r\n"
