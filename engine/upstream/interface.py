"""What a provider says to its upstream: bytes in, bytes out.

A provider builds an ``UpstreamRequest`` (method, URL, headers, body, and the
seconds its attempt has left) and hands it to an ``Upstream``: ``send`` reads
the whole answer into a ``Reply``; ``stream`` opens a ``StreamReply`` whose
body arrives as byte chunks. A request that gets no HTTP answer, or a broken
one, raises ``UpstreamError`` with its ``FailureClass`` (TIMEOUT or
CONNECTION); any HTTP status is an answer, for the provider to read.

This module depends on nothing of the engine's but ``turnout.errors``, so the
plugin contract (``turnout.contract.provider``) can build on it.

Providers never see the HTTP client's object model, so what moves the bytes
can change without touching them: in the engine's pools, turnout's own
HTTP/1.1 client (``turnout.upstream.h1_upstream.H1Upstream``) by default, or
``HttpxUpstream`` over an ``httpx2.AsyncClient`` (an injected transport, a
proxy from the environment, or ``TURNOUT_UPSTREAM_TRANSPORT``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2 as httpx
from turnout.errors import FailureClass

__all__ = [
    "HttpxUpstream",
    "Reply",
    "StreamReply",
    "Upstream",
    "UpstreamError",
    "UpstreamRequest",
]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One request to an upstream.

    :param url: the absolute URL, already encoded.
    :param body: the bytes to send.
    :param headers: the headers to send (lower-case names), added to the
        upstream client's own.
    :param method: the HTTP method.
    :param timeout: seconds the attempt has left, or None for no limit: every
        phase (connect, read, ...) is capped by it, never lengthened, so a
        short connect timeout still fails fast.
    """

    url: str
    body: bytes
    headers: Mapping[str, str]
    method: str = "POST"
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole upstream answer: what providers read of a non-streaming response.

    ``headers`` is case-insensitive, like ``httpx2.Response.headers``.
    """

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    reason_phrase: str = ""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


class UpstreamError(Exception):
    """No HTTP answer (or a broken one): ``failure`` is TIMEOUT or CONNECTION.

    ``detail`` is what the client said; it may name the URL, never the body.
    """

    def __init__(self, failure: FailureClass, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


class StreamReply(Protocol):
    """An answer whose body is still arriving.

    ``headers`` is case-insensitive. ``chunks`` gives the body as it comes
    (content-encoding already decoded); ``read`` reads what is left, whole.
    Both raise ``UpstreamError`` when the connection breaks.
    """

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def reason_phrase(self) -> str: ...

    @property
    def is_success(self) -> bool: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...


class Upstream(Protocol):
    """Sends ``UpstreamRequest``s; one per provider instance and event loop."""

    async def send(self, request: UpstreamRequest) -> Reply:
        """The whole answer; raises ``UpstreamError``."""
        ...

    def stream(
        self, request: UpstreamRequest
    ) -> contextlib.AbstractAsyncContextManager[StreamReply]:
        """``async with upstream.stream(request) as reply``: the answer's status and
        headers, its body to read as it arrives; closed however the block ends."""
        ...


def upstream_error(exc: httpx.RequestError) -> UpstreamError:
    """The ``UpstreamError`` for an httpx2 request failure."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError(FailureClass.TIMEOUT, detail)
    return UpstreamError(FailureClass.CONNECTION, detail)


class _HttpxStreamReply:
    __slots__ = ("_response",)

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def reason_phrase(self) -> str:
        return self._response.reason_phrase

    @property
    def is_success(self) -> bool:
        return self._response.is_success

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.RequestError as exc:
            raise upstream_error(exc) from exc

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.RequestError as exc:
            raise upstream_error(exc) from exc


class HttpxUpstream:
    """``Upstream`` over an ``httpx2.AsyncClient`` (the engine's pooled clients,
    or any client a test builds, e.g. over ``httpx2.MockTransport``)."""

    __slots__ = ("client",)

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    def _timeout(self, limit: float | None) -> httpx.Timeout | Any:
        if limit is None:
            return httpx.USE_CLIENT_DEFAULT
        configured = self.client.timeout
        return httpx.Timeout(
            connect=limit if configured.connect is None else min(configured.connect, limit),
            read=limit if configured.read is None else min(configured.read, limit),
            write=limit if configured.write is None else min(configured.write, limit),
            pool=limit if configured.pool is None else min(configured.pool, limit),
        )

    async def send(self, request: UpstreamRequest) -> Reply:
        client = self.client
        headers = dict(request.headers)
        timeout = self._timeout(request.timeout)
        try:
            # the engine's pooled clients read a whole answer without httpx2's objects
            post_bytes = getattr(client, "post_bytes", None)
            if post_bytes is not None and request.method == "POST":
                reply: Reply = await post_bytes(
                    request.url, content=request.body, headers=headers, timeout=timeout
                )
                return reply
            response = await client.request(
                request.method, request.url, content=request.body, headers=headers, timeout=timeout
            )
        except httpx.RequestError as exc:
            raise upstream_error(exc) from exc
        return Reply(
            response.status_code, response.headers, response.content, response.reason_phrase
        )

    @contextlib.asynccontextmanager
    async def stream(self, request: UpstreamRequest) -> AsyncIterator[StreamReply]:
        try:
            async with self.client.stream(
                request.method,
                request.url,
                content=request.body,
                headers=dict(request.headers),
                timeout=self._timeout(request.timeout),
            ) as response:
                yield _HttpxStreamReply(response)
        except httpx.RequestError as exc:
            raise upstream_error(exc) from exc
