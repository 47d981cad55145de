"""Kept-alive HTTP/1.1 connections to one origin, for ``H1Upstream``.

``H1Pool`` opens ``H1Connection``s (``turnout.upstream.h1``) to one (scheme,
host, port), at most ``limit`` at once: a request past the cap waits in line
(the wait bounded by its ``Deadline`` and the read timeout), a connection
released goes to the next in line or idles, and idle ones expire after
``keepalive_expiry`` seconds (one timer per pool). ``default_ssl_context`` is
the verifying TLS context https origins use.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections import deque

from turnout.errors import FailureClass
from turnout.upstream.h1 import Deadline, H1Connection
from turnout.upstream.interface import UpstreamError

__all__ = ["H1Pool", "default_ssl_context"]


def default_ssl_context() -> ssl.SSLContext:
    """Verifying, SNI-sending TLS: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set
    (as httpx2 reads them), else certifi's roots, else the system's."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if cafile is not None and not os.path.isfile(cafile):
        cafile = None
    if capath is not None and not os.path.isdir(capath):
        capath = None
    return _ssl_context(cafile, capath)


@functools.cache
def _ssl_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    if cafile is None and capath is None:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:
            pass
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    context.set_alpn_protocols(["http/1.1"])
    return context


class H1Pool:
    """Kept-alive connections to one origin, at most ``limit`` open at once."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        limit: int,
        keepalive_expiry: float,
        connect_timeout: float | None,
        read_timeout: float | None,
        max_body: int,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.host, self.port = host, port
        self.origin = f"{scheme}://{host}:{port}"
        self.ssl_context = ssl_context
        self.limit = limit
        self.keepalive_expiry = keepalive_expiry
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_body = max_body
        self.idle: list[H1Connection] = []
        self.count = 0  # open or opening connections, idle ones included
        self.waiters: deque[asyncio.Future[H1Connection | None]] = deque()
        self.closed = False
        self._sweep: asyncio.TimerHandle | None = None

    async def acquire(
        self, deadline: Deadline, *, fresh: bool = False
    ) -> tuple[H1Connection, bool]:
        """A connection for one exchange, and whether it was kept alive from an
        earlier one. ``fresh``: never a kept-alive one."""
        idle = self.idle
        if idle:
            if fresh:
                if self.count >= self.limit:
                    self._drop(idle.pop(0))
            else:
                expired = self.loop.time() - self.keepalive_expiry
                while idle:
                    conn = idle.pop()
                    if not conn.closed and conn.idle_since > expired:
                        return conn, True
                    self._drop(conn)
        if self.count >= self.limit:
            fut: asyncio.Future[H1Connection | None] = self.loop.create_future()
            self.waiters.append(fut)
            try:
                handed = await deadline.wait(
                    fut, self.read_timeout, f"waiting for a free connection to {self.origin}"
                )
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._give_back(fut.result())
                raise
            if handed is not None:
                return handed, True
        else:
            self.count += 1
        try:
            conn = await self._connect(deadline)
        except BaseException:
            self._give_back(None)
            raise
        return conn, False

    async def _connect(self, deadline: Deadline) -> H1Connection:
        tls = self.ssl_context
        origin, max_body = self.origin, self.max_body
        opening = self.loop.create_task(
            self.loop.create_connection(
                lambda: H1Connection(origin, max_body),
                self.host,
                self.port,
                ssl=tls,
                server_hostname=self.host if tls is not None else None,
            )
        )
        try:
            _, conn = await deadline.wait(opening, self.connect_timeout, f"connecting to {origin}")
            assert isinstance(conn, H1Connection)
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError)
            detail = str(exc) or type(exc).__name__
            raise UpstreamError(
                FailureClass.CONNECTION, f"cannot connect to {origin}: {detail}"
            ) from exc
        return conn

    def release(self, conn: H1Connection) -> None:
        """``conn`` finished an exchange cleanly: the next in line gets it, or it idles."""
        if self.closed:
            self._drop(conn)
            return
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.keepalive_expiry, self._expire)

    def discard(self, conn: H1Connection) -> None:
        """``conn`` cannot carry another exchange: close it, free its place."""
        conn.close()
        self._give_back(None)

    def _drop(self, conn: H1Connection) -> None:
        conn.close()
        self.count -= 1

    def _give_back(self, conn: H1Connection | None) -> None:
        if conn is not None:
            self.release(conn)
            return
        self.count -= 1
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                self.count += 1  # the place is the waiter's: it connects
                fut.set_result(None)
                return

    def _expire(self) -> None:
        self._sweep = None
        expired = self.loop.time() - self.keepalive_expiry
        keep = []
        for conn in self.idle:
            if conn.closed or conn.idle_since <= expired:
                self._drop(conn)
            else:
                keep.append(conn)
        self.idle = keep
        if keep:
            due = min(c.idle_since for c in keep) + self.keepalive_expiry
            self._sweep = self.loop.call_at(due, self._expire)

    def close(self) -> None:
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        idle, self.idle = self.idle, []
        for conn in idle:
            self._drop(conn)
