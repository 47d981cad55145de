"""An httpx2 transport that sends requests with aiohttp.

What moves the bytes under the engine's httpx2 clients is a performance
decision (benchmarks/RESULTS.md, "HTTP gateway"). httpx2's own transport
(httpcore2 over anyio) costs several times more CPU per request than aiohttp's
C-accelerated client on the same loop; this adapter is what
``TURNOUT_UPSTREAM_TRANSPORT=aiohttp`` selects (the default is turnout's own
client, ``turnout.upstream.h1_upstream``, cheaper still). It only translates: an
``httpx2.Request`` into one ``aiohttp.ClientSession.request`` call, aiohttp's response into an
``httpx2.Response`` whose body streams from the socket, and every aiohttp
failure into the ``httpx2`` exception a provider already handles (a server
that drops the connection is ``RemoteProtocolError``/``ReadError``, not a
timeout; a refused connection is ``ConnectError``; a stalled read is
``ReadTimeout``).

Timeouts map per phase: ``connect`` bounds opening a connection, ``pool`` the
wait for a free one plus the connect, ``read`` each read from the socket.
aiohttp has no per-write timeout, so ``write`` is not enforced (request bodies
are small and bounded by the attempt's own deadline). HTTP/1.1 only.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import httpx2 as httpx
from turnout.upstream.interface import Reply

__all__ = ["AiohttpTransport", "Reply", "map_exception"]


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # httpx2's context (certifi roots), so both transports trust the same CAs
    return httpx.create_ssl_context()


def map_exception(exc: BaseException, request: httpx.Request | None = None) -> httpx.TransportError:
    """The ``httpx2`` exception that httpx2's own transport raises for the same failure."""
    message = str(exc) or type(exc).__name__
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(exc, TimeoutError):  # SocketTimeoutError, ServerTimeoutError, asyncio's
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        kind = httpx.ProxyError
    elif isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerFingerprintMismatch):
        kind = httpx.ConnectError
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientConnectionResetError):
        kind = httpx.WriteError
    elif isinstance(exc, aiohttp.ClientPayloadError):
        cause = exc.__cause__
        kind = httpx.ReadError if isinstance(cause, OSError) else httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientOSError | OSError):
        kind = httpx.ReadError
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        kind = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.ClientResponseError):  # unparsable status line or headers
        kind = httpx.RemoteProtocolError
    else:
        kind = httpx.TransportError
    return kind(message, request=request)


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one response, read from the socket as it arrives."""

    __slots__ = ("_request", "_response")

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise map_exception(exc, self._request) from exc

    async def aclose(self) -> None:
        # Back to the pool when the body was read to its end, closed otherwise.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx2.AsyncBaseTransport`` over one ``aiohttp.ClientSession``.

    :param limits: ``max_connections`` caps open connections (None: no cap);
        ``keepalive_expiry`` is how long an idle one is kept. aiohttp does not
        cap the number of idle connections, and does not probe them per request.
    :param verify: an ``ssl.SSLContext``, or False to skip certificate checks;
        default: httpx2's context (certifi's roots).

    The session is created on the first request, on the loop that sends it;
    like any pooled client, one transport belongs to one event loop.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        limits = limits or httpx.Limits()
        self._limit = limits.max_connections or 0
        self._keepalive = limits.keepalive_expiry
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        ssl_context = _default_ssl_context() if self._verify is True else self._verify
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=0,
            keepalive_timeout=self._keepalive if self._keepalive is not None else 15.0,
            ssl=ssl_context,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # httpx2 decodes Content-Encoding itself
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx2 keeps the cookies
            timeout=aiohttp.ClientTimeout(total=None),
            # httpx2 already set the headers it means to send
            skip_auto_headers=("Content-Type",),
        )
        return self._session

    def _timeout(self, timeouts: dict[str, float | None]) -> aiohttp.ClientTimeout:
        key = (timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            if len(self._timeouts) > 64:
                self._timeouts.clear()
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None,
                # aiohttp's ``connect`` includes the wait for a pooled connection
                connect=None if pool is None or connect is None else pool + connect,
                sock_connect=connect,
                sock_read=read,
            )
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        data: Any
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = request.stream  # an async byte stream: aiohttp sends it chunked
        headers = request.headers
        if data is not None and not isinstance(data, bytes):
            headers = headers.copy()
            headers.pop("transfer-encoding", None)
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=headers.multi_items(),
                data=data,
                allow_redirects=False,
                timeout=self._timeout(request.extensions.get("timeout", {})),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise map_exception(exc, request) from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1")
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response, request),
            extensions=extensions,
        )

    async def post(
        self,
        url: str,
        content: bytes,
        headers: Sequence[tuple[str, str]],
        timeouts: dict[str, float | None],
    ) -> Reply:
        """POST ``content`` and read the whole answer, without httpx2's request and
        response objects (the hot path of a non-streaming completion; about a
        tenth of a millisecond less per request, benchmarks/RESULTS.md).

        Failures raise the same ``httpx2`` exceptions as ``handle_async_request``;
        ``headers`` are sent as given (the caller merged the client's own in).
        """
        session = self._session or self._open()
        try:
            async with session.request(
                "POST",
                url,
                headers=headers,
                data=content,
                allow_redirects=False,
                timeout=self._timeout(timeouts),
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise map_exception(exc, httpx.Request("POST", url)) from exc
        coding = response.headers.get("content-encoding")
        if coding is not None and coding.strip().lower() != "identity":
            # decoded as httpx2 would (the session itself never decompresses)
            body = httpx.Response(
                response.status, headers=response.raw_headers, content=body
            ).content
        return Reply(response.status, response.headers, body, response.reason or "")

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
